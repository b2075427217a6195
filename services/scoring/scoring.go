// Package scoring decides, for each accepted search, whether the bank approves the client
// for the product asked and up to what, from the bank's pre-approval data and its credit
// policy, and publishes that decision for the offers service.
package scoring

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/pkg/testphones"
	"github.com/demobank/yacredits/services/scoring/policy"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// instrumentation names this package in spans.
const instrumentation = "github.com/demobank/yacredits/services/scoring"

// Config is what the scoring service reads from its environment.
type Config struct {
	// PreapprovalsFile (PREAPPROVALS_FILE) is an export (CSV) to seed the pre-approval
	// object store with when it holds no snapshot; empty seeds the built-in demo data. Once
	// the store holds one, the data comes from cmd/yactl imports alone.
	PreapprovalsFile string
	// PolicyFile (POLICY_FILE) is the seed of the policy bucket: the credit policy written
	// there when the bucket holds none (empty: the built-in default). Once the bucket has a
	// policy, scoring decides with the bucket's and follows its changes; change it with
	// `yactl policy put`, not this file. The file is still read and validated at every
	// start, so a broken one stops the service when it is deployed.
	PolicyFile string
	// TestPhones (TEST_PHONES) is a file of phones with fixed outcomes (pkg/testphones),
	// decided from it instead of the pre-approvals. Empty: none.
	TestPhones string
	// PhoneHashKey (PHONE_HASH_KEY) hashes the seed's phones the way the gateway does.
	PhoneHashKey []byte
	// PhoneHashKeysOld (PHONE_HASH_KEYS_OLD) are the earlier keys, after a rotation: a
	// snapshot made under one is still served, and test phones are known under each.
	PhoneHashKeysOld [][]byte
	// Concurrency (CONCURRENCY) is how many searches one replica scores at once.
	Concurrency int
	// HealthAddr (HEALTH_ADDR) serves /healthz and /readyz for the orchestrator; empty
	// serves nothing (the standalone binary, where the gateway's endpoints cover the process).
	HealthAddr string
	NATS       config.NATS
	Log        telemetry.LogConfig
}

// LoadConfig reads and checks the variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{
		PreapprovalsFile: r.String("PREAPPROVALS_FILE", ""),
		PolicyFile:       r.String("POLICY_FILE", ""),
		TestPhones:       r.String("TEST_PHONES", ""),
		PhoneHashKey:     []byte(r.Secret("PHONE_HASH_KEY", "")),
		Concurrency:      r.Int("CONCURRENCY", 64, 1, 4096),
		HealthAddr:       r.Addr("HEALTH_ADDR", ""),
		NATS:             config.ReadNATS(r),
		Log:              telemetry.ReadLogConfig(r),
	}
	local := allLoopback(c.NATS.URL) && (c.HealthAddr == "" || config.Loopback(c.HealthAddr))
	if len(c.PhoneHashKey) < phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEY", "required, at least %d bytes, the same as the gateway's", phone.MinKeyBytes)
	} else if err := phone.CheckKey(c.PhoneHashKey); err != nil && !local {
		r.Fail("PHONE_HASH_KEY", "refused beyond loopback (NATS_URL %s): %v", c.NATS.URL, err)
	}
	c.PhoneHashKeysOld = phone.ReadOldKeys(r, !local)
	if _, err := phone.NewKeyring(c.PhoneHashKey, c.PhoneHashKeysOld...); err != nil && len(c.PhoneHashKey) >= phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEYS_OLD", "%v", err)
	}
	return c, r.Err()
}

// Deps are what the service is given.
type Deps struct {
	JS  jetstream.JetStream
	Log zerolog.Logger
	Now func() time.Time // nil: time.Now
	// Tracer makes the service's spans, Meter its measurements (nil: none); Metrics is
	// served as /metrics beside the health endpoints (nil: not served).
	Tracer  trace.TracerProvider
	Meter   metric.MeterProvider
	Metrics http.Handler
	// Checks, if set, is given the service's readiness checks once they are made: the
	// standalone binary serves them on the gateway's /readyz.
	Checks func([]health.Check)
}

//go:embed demo_preapprovals.csv
var demoPreapprovals []byte

// Run consumes accepted searches until ctx is cancelled, then finishes the ones in hand. It
// starts consuming once the first pre-approval snapshot is loaded (until then /readyz says
// not ready), and swaps in each new snapshot the import command stores.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "scoring").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	keys, err := phone.NewKeyring(cfg.PhoneHashKey, cfg.PhoneHashKeysOld...)
	if err != nil {
		return err
	}
	policySeed, err := readPolicySeed(cfg.PolicyFile)
	if err != nil {
		return err
	}
	tests, err := loadTestPhones(cfg.TestPhones, keys)
	if err != nil {
		return err
	}
	if tests.Len() > 0 {
		log.Info().Int("test_phones", tests.Len()).Msg("test phones configured: their searches are decided from TEST_PHONES")
	}
	seed, err := seedSource(cfg.PreapprovalsFile)
	if err != nil {
		return err
	}
	snaps := newSnapshots(deps.JS, keys, seed, log)
	var (
		consumer atomic.Pointer[bus.Consumer[contracts.LoanRequested]]
		policies atomic.Pointer[document.Source[*policy.Policy]]
		loaded   = make(chan struct{})
	)
	checks := append(health.JetStream(deps.JS, []string{contracts.StreamLoan}, []string{contracts.BucketSearches, contracts.BucketPolicy}),
		provision.Probe(deps.JS, provision.Scoring(provision.Settings{Replicas: cfg.NATS.Replicas})...),
		health.Check{Name: "pre-approvals", Probe: snaps.describe},
		health.Check{Name: "policy", Probe: func(context.Context) (string, error) {
			src := policies.Load()
			if src == nil {
				return "", errors.New("no policy in force yet")
			}
			return fmt.Sprintf("revision %d in force", src.Current().Revision), nil
		}},
		health.Func("consuming", func() error {
			c := consumer.Load()
			if c == nil {
				return errors.New("waiting for the searches bucket")
			}
			return c.Ready()
		}),
		health.Consumer(deps.JS, contracts.StreamLoan, contracts.ConsumerScoring))
	if deps.Checks != nil {
		deps.Checks(checks)
	}
	ops := health.Handler(health.List(checks...), deps.Metrics)
	grp, gctx := errgroup.WithContext(ctx)
	// Health first: alive while waiting for the gateway's bucket, ready only after.
	grp.Go(func() error { return health.Serve(gctx, cfg.HealthAddr, ops) })
	grp.Go(func() error { return snaps.run(gctx) })
	grp.Go(func() error {
		src := document.Follow(gctx, deps.JS, PolicyDocument, policySeed, log, nil)
		if src == nil {
			return nil
		}
		policies.Store(src)
		close(loaded)
		return src.Run(gctx)
	})
	grp.Go(func() error {
		store, err := search.Open(gctx, deps.JS, search.Options{Log: log, Meter: deps.Meter})
		if err != nil {
			return err
		}
		select {
		case <-loaded:
		case <-gctx.Done():
			return nil
		}
		s := &scorer{
			snaps: snaps, policy: policies.Load().Current, tests: tests, now: now, store: store,
			pub: bus.NewPublisher(deps.JS),
		}
		c := &bus.Consumer[contracts.LoanRequested]{
			Name: contracts.ConsumerScoring, Subject: contracts.SubjectRequested,
			Decode: contracts.DecodeLoanRequested, Handle: s.handle, OnDeadLetter: s.reject,
			Concurrency: cfg.Concurrency, Log: log,
			Tracer: deps.Tracer, Meter: deps.Meter,
		}
		consumer.Store(c)
		// Scoring before the first snapshot would decline every client as unknown.
		select {
		case <-snaps.ready:
		case <-gctx.Done():
			return nil
		}
		log.Info().Int("entries", snaps.index().Len()).Msg("scoring consuming")
		return c.Run(gctx, deps.JS)
	})
	return grp.Wait()
}

// testPhones are the test phones as hashed under each key scoring holds, by key id: a
// request is matched under the key it names (or any, if it names none).
type testPhones map[string]*testphones.Set

func loadTestPhones(path string, keys *phone.Keyring) (testPhones, error) {
	out := testPhones{}
	for _, h := range append([]*phone.Hasher{keys.Current()}, keys.Old()...) {
		set, err := testphones.Load(path, h)
		if err != nil {
			return nil, err
		}
		out[h.ID()] = set
	}
	return out, nil
}

func (t testPhones) lookup(req *contracts.LoanRequested) *testphones.Phone {
	for id, set := range t {
		if h, ok := req.HashUnder(id); ok {
			if hash, err := phone.ParseHex(h); err == nil {
				if tp := set.Lookup(hash); tp != nil {
					return tp
				}
			}
		}
	}
	return nil
}

func (t testPhones) Len() int {
	for _, set := range t {
		return set.Len()
	}
	return 0
}

type scorer struct {
	snaps *snapshots
	// policy is the credit policy in force, read once per search.
	policy func() document.InForce[*policy.Policy]
	tests  testPhones
	now    func() time.Time
	store  *search.Store
	pub    *bus.Publisher
}

func (s *scorer) handle(ctx context.Context, req *contracts.LoanRequested) error {
	snap := s.snaps.cur.Load() // one load: the whole search sees one snapshot
	if snap == nil {
		return errors.New("no pre-approval snapshot loaded") // unreachable: consuming waits for one
	}
	// The phone's hash under the key the snapshot is made with: during a rotation the
	// request carries it under the earlier key too.
	under, ok := req.HashUnder(snap.ix.Key().String())
	if !ok {
		// The gateway holds no key the snapshot is made with: the rotation's steps out of
		// order. Tried again (a snapshot under its key may come), then a dead letter.
		return fmt.Errorf("the search's phone is hashed under key %s, the pre-approval snapshot under %s: import under the gateway's key (docs/operating.md, \"Keys and their rotation\")",
			req.PhoneKey, snap.ix.Key())
	}
	hash, err := phone.ParseHex(under)
	if err != nil {
		return bus.Permanent(err)
	}
	pol := s.policy() // and one policy
	basis := &contracts.ScoreBasis{Snapshot: snap.content, Policy: pol.Revision}
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation).Start(ctx, "score client",
		trace.WithAttributes(attribute.String("search_id", req.SearchID)))
	var (
		rec      *preapproval.Record
		decision contracts.Scored
	)
	if tp := s.tests.lookup(req); tp != nil {
		span.SetAttributes(attribute.Bool("search.test", true))
		var answer bool
		decision, rec, answer, err = s.decideTest(ctx, pol.Value, tp, req)
		if err != nil || !answer {
			span.End()
			return err // a deadline phone: acknowledged, never answered
		}
		basis.Snapshot = contracts.SnapshotTestPhones
	} else {
		if r, ok := snap.ix.Lookup(hash, req.ProductType); ok {
			rec = &r
		}
		decision = policy.Decide(pol.Value, rec, *req, s.now())
	}
	if rec != nil {
		basis.Row = &contracts.PreapprovalRow{Kind: rec.Kind, Limit: rec.Limit, Grade: rec.Grade, ValidUntil: rec.ValidUntil.UTC()}
	}
	decision.Basis = basis
	// Neither the phone nor the decision (whether the client is pre-approved, the verdict,
	// grade and reasons): a trace is read by whoever operates the system; a decision is
	// explained to the auditor from the audit trail (docs/security.md, "Logs and traces").
	span.SetAttributes(attribute.String("search.product_type", string(req.ProductType)))
	span.End()
	scored, err := contracts.NewScored(decision)
	if err != nil {
		return bus.Permanent(fmt.Errorf("policy produced an invalid score: %w", err))
	}
	// One verdict per request message: a redelivery repeats its id, a re-send has its own.
	requestID := bus.MessageID(ctx)
	if requestID == "" {
		requestID = req.SearchID // a message from before ids carried the request's fingerprint
	}
	_, err = s.pub.Publish(ctx, contracts.SubjectScored, req.SearchID, contracts.ScoredMsgID(requestID), scored)
	return err
}

// ReasonTestPhone is the reason a test phone set to reject is declined.
const ReasonTestPhone = "test_phone"

// decideTest decides a test phone's search from its fixed outcome: after its delay; by the
// credit policy as if the bank had pre-approved it (so the offers are the catalog's real
// ones); declined; or not at all (answer false), for the sweeper to finish at the deadline.
func (s *scorer) decideTest(ctx context.Context, pol *policy.Policy, tp *testphones.Phone, req *contracts.LoanRequested) (d contracts.Scored, rec *preapproval.Record, answer bool, err error) {
	if tp.Delay > 0 {
		t := time.NewTimer(tp.Delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return d, nil, false, ctx.Err()
		case <-t.C:
		}
	}
	now := s.now()
	r := *req
	r.Test = true // whatever the gateway knew: the record says it is a test
	switch tp.Outcome {
	case testphones.Deadline:
		return d, nil, false, nil
	case testphones.Reject:
		return contracts.Scored{Request: r, Verdict: contracts.Declined, Reasons: []string{ReasonTestPhone}, ScoredAt: now}, nil, true, nil
	}
	if tp.Approves(r.ProductType) {
		rec = &preapproval.Record{Product: r.ProductType, Kind: tp.Kind, Limit: tp.Limit, Grade: tp.Grade,
			ValidUntil: now.AddDate(1, 0, 0)}
	}
	return policy.Decide(pol, rec, r, now), rec, true, nil
}

// reject finishes a search whose request was dead-lettered: its waiting POST, if any, is
// answered rejected at once instead of at its deadline.
func (s *scorer) reject(ctx context.Context, searchID string, req *contracts.LoanRequested, reason string) error {
	_, err := s.store.Reject(ctx, searchID, req, telemetry.Traceparent(ctx), reason, s.now())
	if errors.Is(err, contracts.ErrAlreadyDone) || errors.Is(err, search.ErrNotFound) || errors.Is(err, search.ErrConflict) {
		return nil
	}
	return err
}

// allLoopback reports whether every server of a NATS_URL list is on this machine.
func allLoopback(urls string) bool {
	for _, u := range strings.Split(urls, ",") {
		if !config.Loopback(strings.TrimSpace(u)) {
			return false
		}
	}
	return true
}

// PolicyDocument is the credit policy as a versioned document (package document), watched by
// every scoring replica and put with `yactl policy put`.
var PolicyDocument = document.Spec[*policy.Policy]{
	Bucket: contracts.BucketPolicy, Key: contracts.PolicyKey, Name: "policy",
	Parse: policy.Parse,
	Problems: func(err error) []string {
		var invalid *policy.InvalidError
		if errors.As(err, &invalid) {
			return invalid.Lines()
		}
		return nil
	},
}

// readPolicySeed is POLICY_FILE checked, or the default policy.
func readPolicySeed(path string) ([]byte, error) {
	if path == "" {
		return policy.DefaultJSON(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if _, err := policy.Parse(data); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return data, nil
}
