// Package scoring decides, for each accepted search, whether the bank approves the client
// for the product asked and up to what, from the bank's pre-approval data and its credit
// policy, and publishes that decision for the offers service.
package scoring

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/kvstore"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/services/scoring/policy"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// Config is what the scoring service reads from its environment.
type Config struct {
	// PreapprovalsFile (PREAPPROVALS_FILE) is the bank's pre-approval export (CSV); empty
	// uses the built-in demo data.
	PreapprovalsFile string
	// PolicyFile (POLICY_FILE) is the credit policy; empty uses the built-in default.
	PolicyFile string
	// PhoneHashKey (PHONE_HASH_KEY) hashes the export's phones the way the gateway does.
	PhoneHashKey []byte
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
		PhoneHashKey:     []byte(r.Secret("PHONE_HASH_KEY", "")),
		Concurrency:      r.Int("CONCURRENCY", 64, 1, 4096),
		HealthAddr:       r.Addr("HEALTH_ADDR", ""),
		NATS:             config.ReadNATS(r),
		Log:              telemetry.ReadLogConfig(r),
	}
	if len(c.PhoneHashKey) < phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEY", "required, at least %d bytes, the same as the gateway's", phone.MinKeyBytes)
	}
	return c, r.Err()
}

// Deps are what the service is given.
type Deps struct {
	JS  jetstream.JetStream
	Log zerolog.Logger
	Now func() time.Time // nil: time.Now
}

//go:embed demo_preapprovals.csv
var demoPreapprovals []byte

// Run consumes accepted searches until ctx is cancelled, then finishes the ones in hand.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "scoring").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	hasher, err := phone.NewHasher(cfg.PhoneHashKey)
	if err != nil {
		return err
	}
	pol, err := loadPolicy(cfg.PolicyFile)
	if err != nil {
		return err
	}
	index, err := loadPreapprovals(cfg.PreapprovalsFile, hasher, log)
	if err != nil {
		return err
	}
	store, err := kvstore.Open(ctx, deps.JS)
	if err != nil {
		return err
	}
	s := &scorer{
		index: index, policy: pol, now: now, store: store,
		pub: bus.NewPublisher(deps.JS, cfg.NATS.Replicas),
	}
	c := &bus.Consumer[contracts.LoanRequested]{
		Name: contracts.ConsumerScoring, Subject: contracts.SubjectRequested,
		Decode: contracts.DecodeLoanRequested, Handle: s.handle, OnDeadLetter: s.reject,
		Concurrency: cfg.Concurrency, Replicas: cfg.NATS.Replicas, Log: log,
	}
	log.Info().Int("clients", index.Len()).Msg("scoring consuming")
	mux := http.NewServeMux()
	health.Register(mux, health.JetStream(deps.JS, []string{contracts.StreamLoan}, []string{contracts.BucketSearches}))
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return c.Run(gctx, deps.JS) })
	grp.Go(func() error { return health.Serve(gctx, cfg.HealthAddr, mux) })
	return grp.Wait()
}

type scorer struct {
	index  *preapproval.Index
	policy *policy.Policy
	now    func() time.Time
	store  *kvstore.Store
	pub    *bus.Publisher
}

func (s *scorer) handle(ctx context.Context, req *contracts.LoanRequested) error {
	hash, err := phone.ParseHex(req.PhoneHash)
	if err != nil {
		return bus.Permanent(err)
	}
	var rec *preapproval.Record
	if r, ok := s.index.Lookup(hash, req.ProductType); ok {
		rec = &r
	}
	scored, err := contracts.NewScored(policy.Decide(s.policy, rec, *req, s.now()))
	if err != nil {
		return bus.Permanent(fmt.Errorf("policy produced an invalid score: %w", err))
	}
	return s.pub.Publish(ctx, contracts.SubjectScored, req.SearchID,
		contracts.MsgID(req.SearchID, contracts.StageScored), scored)
}

// reject finishes a search whose request was dead-lettered.
func (s *scorer) reject(ctx context.Context, searchID, reason string) error {
	_, err := s.store.Finish(ctx, searchID, nil, []string{reason}, s.now())
	if errors.Is(err, contracts.ErrAlreadyDone) || errors.Is(err, kvstore.ErrNotFound) {
		return nil
	}
	return err
}

func loadPolicy(path string) (*policy.Policy, error) {
	if path == "" {
		return policy.Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	p, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// loadPreapprovals reads the export into an index, logging each bad row by line number.
func loadPreapprovals(path string, h *phone.Hasher, log zerolog.Logger) (*preapproval.Index, error) {
	var src io.Reader = bytes.NewReader(demoPreapprovals)
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open pre-approvals: %w", err)
		}
		defer f.Close()
		src = f
	}
	r := preapproval.NewReader(src, h)
	var b preapproval.Builder
	bad := 0
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var rowErr *preapproval.RowError
		if errors.As(err, &rowErr) {
			bad++
			log.Warn().Int("line", rowErr.Line).Str("reason", rowErr.Reason).Msg("pre-approval row skipped")
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read pre-approvals: %w", err)
		}
		if err := b.Add(rec); err != nil {
			return nil, fmt.Errorf("index pre-approvals: %w", err)
		}
	}
	ix := b.Index()
	log.Info().Int("clients", ix.Len()).Int("bad_rows", bad).Msg("pre-approvals loaded")
	return ix, nil
}
