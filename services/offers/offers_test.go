package offers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/services/offers/pricing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logSink keeps a service's JSON log entries for a test to wait on.
type logSink struct {
	mu      sync.Mutex
	entries []map[string]any
	raw     strings.Builder
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(p)
	var e map[string]any
	if err := json.Unmarshal(p, &e); err == nil { // zerolog writes one entry per call
		l.entries = append(l.entries, e)
	}
	return len(p), nil
}

// find returns the first entry with message msg and, if revision is not 0, that revision.
func (l *logSink) find(msg string, revision uint64) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e["message"] == msg && (revision == 0 || e["revision"] == float64(revision)) {
			return e
		}
	}
	return nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// service is offers.Run on a real JetStream server, stopped through its context and
// waited for at cleanup.
type service struct {
	logs *logSink
	done chan struct{}
	err  error // Run's result, once done is closed
}

// testLinkKeys is a link key set made for the test, as LINK_KEYS holds it.
func testLinkKeys(t *testing.T) string {
	t.Helper()
	k, err := offerlink.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	data, err := offerlink.NewKeySet(k).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// testAuditKey is the trail's pseudonym key in these tests.
var testAuditKey = strings.Repeat("5a", 32)

func startService(t *testing.T, js jetstream.JetStream, env map[string]string) *service {
	t.Helper()
	keys := testLinkKeys(t)
	cfg, err := LoadConfig(func(k string) string {
		switch k {
		case "LINK_KEYS":
			return keys
		case "AUDIT_PSEUDONYM_KEY":
			return testAuditKey
		}
		return env[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &service{logs: &logSink{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		s.err = Run(ctx, cfg, Deps{JS: js, Log: zerolog.New(s.logs)})
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
		if s.err != nil {
			t.Errorf("Run: %v", s.err)
		}
	})
	return s
}

// waitRunning waits until the service consumes: it has logged so, and the streams and the
// durable consumer exist. Waiting for them also keeps a test from stopping the server in
// the middle of creating a stream, which leaks that stream's goroutines in nats-server.
func (s *service) waitRunning(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	s.waitLog(t, 10*time.Second, "offers consuming", 0)
	natstest.Eventually(t, 10*time.Second, func() error {
		_, err := js.Consumer(context.Background(), contracts.StreamLoan, contracts.ConsumerOffers)
		return err
	})
}

// waitLog waits up to timeout for the entry msg (with revision, unless 0) and returns it.
func (s *service) waitLog(t *testing.T, timeout time.Duration, msg string, revision uint64) map[string]any {
	t.Helper()
	var found map[string]any
	natstest.Eventually(t, timeout, func() error {
		select {
		case <-s.done:
			t.Fatalf("Run returned early: %v\n%s", s.err, s.logs)
		default:
		}
		if found = s.logs.find(msg, revision); found == nil {
			return fmt.Errorf("no %q log entry for revision %d in:\n%s", msg, revision, s.logs)
		}
		return nil
	})
	return found
}

// setup starts a JetStream server, provisioned, and binds to the searches bucket.
func setup(t *testing.T) (*natstest.Server, jetstream.JetStream, *search.Store) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	store, err := provisiontest.Searches(t, js, 1, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, js, store
}

func catalogBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := CatalogDocument.Bind(natstest.Context(t, 10*time.Second), js)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// demoWith is the demo catalog with old replaced by new, which must occur exactly once.
func demoWith(t *testing.T, pairs ...string) []byte {
	t.Helper()
	s := string(catalog.DemoJSON())
	for i := 0; i < len(pairs); i += 2 {
		if n := strings.Count(s, pairs[i]); n != 1 {
			t.Fatalf("%q occurs %d times in the demo catalog", pairs[i], n)
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return []byte(s)
}

const demoStandardRateA = `"A": {"min": 21.9, "max": 24.9}`

// oneProduct is a valid catalog unlike the demo one: a single cash loan.
const oneProduct = `{"products": [{"id": "cash-only", "product_type": "loan",
  "amount": {"min": 30000, "max": 1000000}, "term": {"min": 12, "max": 60},
  "rates": {"A": {"min": 15.9, "max": 18.9}}, "required_documents": ["Паспорт РФ"],
  "proposal_link": {"link": "https://bank.example/apply?offer={product_id}"}}]}`

// scored is an approved (or declined) grade-A loan search for 500 000 ₽ over 36 months,
// built through the contracts' constructors as scoring would.
func scored(t *testing.T, verdict contracts.Verdict, grade string) *contracts.Scored {
	t.Helper()
	now := time.Now().UTC()
	amount, term := money.Roubles(500_000), 36
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7933***5040",
		ProductType: contracts.ProductLoan, Amount: &amount, Term: &term,
		RequestedAt: now, Deadline: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := contracts.Scored{Request: *req, Verdict: verdict, ScoredAt: now}
	if verdict == contracts.Approved {
		s.Kind, s.Grade = contracts.PreApproved, grade
		s.Amount = &contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(1_000_000)}
	} else {
		s.Reasons = []string{"no_preapproval"}
	}
	out, err := contracts.NewScored(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// priceSearch runs one search through the service the way the pipeline does: its score
// published on loan.v1.scored, and the record the service creates read back.
func priceSearch(t *testing.T, js jetstream.JetStream, store *search.Store) map[string]contracts.Offer {
	t.Helper()
	ctx := natstest.Context(t, 30*time.Second)
	s := scored(t, contracts.Approved, "A")
	id := s.Request.SearchID
	natstest.Eventually(t, 20*time.Second, func() error { // until the client is reconnected
		_, err := bus.NewPublisher(js).Publish(ctx, contracts.SubjectScored, id, contracts.ScoredMsgID(id), s)
		return err
	})
	var done *contracts.Search
	natstest.Eventually(t, 20*time.Second, func() error {
		got, _, err := store.Get(ctx, id)
		if err != nil {
			return err
		}
		if got.Status() != contracts.Done {
			return errors.New("search not finished yet")
		}
		done = got
		return nil
	})
	if done.Decision() != contracts.HasApprove {
		t.Fatalf("search finished as %s %v, want offers", done.Decision(), done.Reasons)
	}
	offers, err := contracts.DecodeOffers(done.Data())
	if err != nil {
		t.Fatal(err)
	}
	if done.Basis == nil || len(done.Basis.Offered) != len(offers) {
		t.Fatalf("the record names the products of %v of its %d offers", done.Basis, len(offers))
	}
	byProduct := map[string]contracts.Offer{}
	for i, o := range offers {
		byProduct[done.Basis.Offered[i]] = o
	}
	return byProduct
}

// offerOf returns the offer for product id, as the record's basis names it.
func offerOf(t *testing.T, offers map[string]contracts.Offer, id string) contracts.Offer {
	t.Helper()
	o, ok := offers[id]
	if !ok {
		t.Fatalf("no offer for %s among %d", id, len(offers))
	}
	return o
}

func rate(t *testing.T, min, max string) contracts.RateRange {
	t.Helper()
	lo, err1 := money.ParseRate(min)
	hi, err2 := money.ParseRate(max)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return contracts.RateRange{Min: lo, Max: hi}
}

// A catalog put into the bucket reaches a running service within a second and prices the
// next search; a catalog that does not validate is refused with every problem logged, and
// the one in force keeps pricing.
func TestCatalogChangeReachesRunningService(t *testing.T) {
	_, js, store := setup(t)
	svc := startService(t, js, nil)
	svc.waitRunning(t, js)
	if got, want := offerOf(t, priceSearch(t, js, store), "cash-standard").Rate, rate(t, "21.9", "24.9"); got != want {
		t.Fatalf("demo catalog: cash-standard rate %v, want %v", got, want)
	}

	kv := catalogBucket(t, js)
	ctx := natstest.Context(t, 30*time.Second)
	cheaper := demoWith(t, demoStandardRateA, `"A": {"min": 11.9, "max": 12.9}`)
	rev, err := kv.Put(ctx, contracts.CatalogKey, cheaper)
	if err != nil {
		t.Fatal(err)
	}
	swapped := svc.waitLog(t, time.Second, "catalog in force", rev)
	if swapped["products"] != float64(5) {
		t.Errorf("swap logged %v products, want 5", swapped["products"])
	}
	want := rate(t, "11.9", "12.9")
	if got := offerOf(t, priceSearch(t, js, store), "cash-standard").Rate; got != want {
		t.Fatalf("after the put: cash-standard rate %v, want %v", got, want)
	}

	// Two mistakes at once: an inverted rate range and a card with no grace period.
	invalid := demoWith(t, `"A": {"min": 21.9, "max": 24.9}`, `"A": {"min": 31.9, "max": 24.9}`,
		`"grace_period": 120`, `"grace_period": 0`)
	var verr *catalog.ValidationError
	if _, err := catalog.Parse(invalid); !errors.As(err, &verr) || len(verr.Problems) != 2 {
		t.Fatalf("the invalid catalog should have two problems, got %v", err)
	}
	badRev, err := kv.Put(ctx, contracts.CatalogKey, invalid)
	if err != nil {
		t.Fatal(err)
	}
	refused := svc.waitLog(t, time.Second, "catalog refused; the one in force stays", badRev)
	if got := refused["problems"]; fmt.Sprint(got) != fmt.Sprint(verr.Problems) {
		t.Errorf("logged problems %v, want %v", got, verr.Problems)
	}
	if refused["in_force_revision"] != float64(rev) || refused["level"] != "error" {
		t.Errorf("refusal logged as %v", refused)
	}
	if got := offerOf(t, priceSearch(t, js, store), "cash-standard").Rate; got != want {
		t.Fatalf("after the refused put: cash-standard rate %v, want %v still", got, want)
	}
	if svc.logs.find("catalog in force", badRev) != nil {
		t.Fatal("the refused catalog was put in force")
	}
}

// The bucket is seeded only while it holds no catalog: services starting together write one
// seed between them, and never replace a catalog that is there.
func TestSeedingDoesNotOverwrite(t *testing.T) {
	operators := strings.Replace(oneProduct, "cash-only", "operator-loan", 1) // neither seed
	tests := []struct {
		name     string
		existing string // put before the services start; empty for none
		deleted  bool   // and then deleted
		wantSeed bool   // one of the services seeds the bucket
	}{
		{name: "empty bucket", wantSeed: true},
		{name: "catalog already there", existing: operators},
		{name: "catalog deleted", existing: operators, deleted: true, wantSeed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _, _ := setup(t)
			ctx := natstest.Context(t, 30*time.Second)
			_, js := natstest.JetStream(t, srv.ClientURL())
			kv := catalogBucket(t, js)
			before := 0 // revisions in the bucket before the start
			if tt.existing != "" {
				if _, err := kv.Put(ctx, contracts.CatalogKey, []byte(tt.existing)); err != nil {
					t.Fatal(err)
				}
				before++
			}
			if tt.deleted {
				if err := kv.Delete(ctx, contracts.CatalogKey); err != nil {
					t.Fatal(err)
				}
				before++
			}
			// Two replicas starting together with different seeds: the demo catalog and a
			// one-product file.
			seedFile := t.TempDir() + "/seed.json"
			writeFile(t, seedFile, oneProduct)
			_, js1 := natstest.JetStream(t, srv.ClientURL())
			_, js2 := natstest.JetStream(t, srv.ClientURL())
			a := startService(t, js1, nil)
			b := startService(t, js2, map[string]string{"CATALOG_FILE": seedFile})
			a.waitRunning(t, js1)
			b.waitRunning(t, js2)
			inForceA := a.waitLog(t, 0, "catalog in force", 0)
			inForceB := b.waitLog(t, 0, "catalog in force", 0)

			history, err := kv.History(ctx, contracts.CatalogKey)
			if err != nil {
				t.Fatal(err)
			}
			want := before
			if tt.wantSeed {
				want++
			}
			if len(history) != want {
				t.Fatalf("%d revisions in the bucket, want %d: a seed was written twice or overwrote a catalog", len(history), want)
			}
			last := history[len(history)-1]
			if !tt.wantSeed && string(last.Value()) != tt.existing {
				t.Fatalf("the bucket holds %.60q…, not the catalog put before the start", last.Value())
			}
			rev := float64(last.Revision())
			if inForceA["revision"] != rev || inForceB["revision"] != rev || inForceA["products"] != inForceB["products"] {
				t.Fatalf("services run revision %v (%v products) and %v (%v products), want both %v",
					inForceA["revision"], inForceA["products"], inForceB["revision"], inForceB["products"], rev)
			}
			seeded := 0
			for _, s := range []*service{a, b} {
				if s.logs.find("catalog bucket held no catalog: seeded it", 0) != nil {
					seeded++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tt.wantSeed]; seeded != want {
				t.Fatalf("%d services seeded the bucket, want %d", seeded, want)
			}
		})
	}
}

// A starting service prices with the newest valid catalog: revisions after it that do not
// validate were refused by the running replicas, so it passes over them too. With no valid
// catalog at all it waits, not ready and saying why, until one is put (an operator's fix
// heals it without a restart). A broken seed file stops it even when the bucket does not
// need it: that is a broken deployment, which no waiting heals.
func TestStartWithRefusedRevisions(t *testing.T) {
	invalid := `{"products": []}`
	tests := []struct {
		name       string
		puts       []string
		seed       string
		wantErr    string // Run's error; empty: starts
		wantForce  uint64 // the revision in force
		wantRefuse uint64 // a revision logged as refused
	}{
		{name: "newest invalid", puts: []string{oneProduct, invalid}, wantForce: 1, wantRefuse: 2},
		{name: "only invalid, then a valid one", puts: []string{invalid}, wantForce: 2},
		{name: "broken seed", puts: []string{oneProduct}, seed: `{"products": [`, wantErr: "seed catalog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, js, _ := setup(t)
			ctx := natstest.Context(t, 30*time.Second)
			kv := catalogBucket(t, js)
			for _, p := range tt.puts {
				if _, err := kv.Put(ctx, contracts.CatalogKey, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"LINK_KEYS": testLinkKeys(t), "AUDIT_PSEUDONYM_KEY": testAuditKey}
			if tt.seed != "" {
				env["CATALOG_FILE"] = t.TempDir() + "/seed.json"
				writeFile(t, env["CATALOG_FILE"], tt.seed)
			}
			cfg, err := LoadConfig(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" {
				err := Run(ctx, cfg, Deps{JS: js, Log: zerolog.Nop()})
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			svc := startService(t, js, env)
			if tt.wantRefuse == 0 {
				svc.waitLog(t, 10*time.Second, "not ready: preparing the catalog again", 0)
				if _, err := kv.Put(ctx, contracts.CatalogKey, []byte(oneProduct)); err != nil {
					t.Fatal(err)
				}
				svc.waitRunning(t, js)
				svc.waitLog(t, 0, "catalog in force", tt.wantForce)
				return
			}
			svc.waitRunning(t, js)
			svc.waitLog(t, 0, "catalog in force", tt.wantForce)
			if svc.logs.find("catalog refused; the one in force stays", tt.wantRefuse) == nil {
				t.Fatalf("revision %d not logged as refused:\n%s", tt.wantRefuse, svc.logs)
			}
		})
	}
}

// The broker restarts under a running service; a catalog put afterwards still reaches it.
func TestCatalogWatchSurvivesBrokerRestart(t *testing.T) {
	srv, js, store := setup(t)
	svc := startService(t, js, nil)
	svc.waitRunning(t, js)
	// One search first: then every stream and consumer exists before the broker goes down
	// (a server shut down in the middle of creating a stream leaks that stream's goroutines).
	if got, want := offerOf(t, priceSearch(t, js, store), "cash-standard").Rate, rate(t, "21.9", "24.9"); got != want {
		t.Fatalf("before the restart: cash-standard rate %v, want %v", got, want)
	}
	kv := catalogBucket(t, js)
	srv.Restart()
	var rev uint64
	natstest.Eventually(t, 20*time.Second, func() error { // until the client is reconnected
		// The provisioner's next pass makes the lost memory streams again.
		if _, err := provision.Apply(natstest.Context(t, 5*time.Second), js, provision.Plan(provision.Defaults(1))); err != nil {
			return err
		}
		var err error
		rev, err = kv.Put(natstest.Context(t, 5*time.Second), contracts.CatalogKey, demoWith(t, demoStandardRateA, `"A": {"min": 9.9, "max": 10.9}`))
		return err
	})
	// nats.go notices the lost watch by missed heartbeats only after some ten seconds; the
	// service's own check must start it again well before that.
	svc.waitLog(t, 6*time.Second, "catalog in force", rev)
	if got, want := offerOf(t, priceSearch(t, js, store), "cash-standard").Rate, rate(t, "9.9", "10.9"); got != want {
		t.Fatalf("after the restart: cash-standard rate %v, want %v", got, want)
	}
}

// The handle path: what a scored search finishes as, and that the first finish wins.
func TestHandle(t *testing.T) {
	_, _, store := setup(t)
	demo, err := catalog.Demo()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	p, keys := testPricer(t, store, demo, now, 10)
	other := scored(t, contracts.Approved, "A")
	tests := []struct {
		name         string
		scored       *contracts.Scored
		pending      bool     // the gateway wrote the pending record first (its budget ran out)
		finishedAs   []string // reasons of a finish before the message arrives
		heldBy       *contracts.Scored
		wantDecision contracts.Decision
		wantReasons  []string
		wantOffers   bool
	}{
		{name: "approved, no record yet: created done", scored: scored(t, contracts.Approved, "A"),
			wantDecision: contracts.HasApprove, wantOffers: true},
		{name: "approved onto the pending record", scored: scored(t, contracts.Approved, "A"), pending: true,
			wantDecision: contracts.HasApprove, wantOffers: true},
		{name: "the pre-approval lapsed before pricing: no link could be valid", scored: func() *contracts.Scored {
			s := scored(t, contracts.Approved, "A")
			until := now
			s.ValidUntil = &until
			return s
		}(), wantDecision: contracts.Rejected, wantReasons: []string{contracts.ReasonPreapprovalLapsed, contracts.ReasonNoOffers}},
		{name: "links expire with the pre-approval", scored: func() *contracts.Scored {
			s := scored(t, contracts.Approved, "A")
			until := now.Add(36 * time.Hour)
			s.ValidUntil = &until
			return s
		}(), wantDecision: contracts.HasApprove, wantOffers: true},
		{name: "declined", scored: scored(t, contracts.Declined, ""),
			wantDecision: contracts.Rejected, wantReasons: []string{"no_preapproval"}},
		{name: "approved, no product for the grade", scored: scored(t, contracts.Approved, "Z"), pending: true,
			wantDecision: contracts.Rejected, wantReasons: []string{contracts.ReasonNoOffers}},
		{name: "already done: first finish wins", scored: scored(t, contracts.Approved, "A"),
			finishedAs:   []string{contracts.ReasonDeadLetter},
			wantDecision: contracts.Rejected, wantReasons: []string{contracts.ReasonDeadLetter}},
		{name: "the id holds another request: it stands", scored: other, heldBy: func() *contracts.Scored {
			s := *scored(t, contracts.Declined, "")
			s.Request.SearchID = other.Request.SearchID
			return &s
		}(), wantDecision: contracts.Rejected, wantReasons: []string{"no_preapproval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := natstest.Context(t, 10*time.Second)
			id := tt.scored.Request.SearchID
			if tt.pending {
				if _, err := store.CreatePending(ctx, contracts.NewSearch(tt.scored.Request, "")); err != nil {
					t.Fatal(err)
				}
			}
			var before uint64
			if tt.finishedAs != nil {
				if _, err := store.Reject(ctx, id, &tt.scored.Request, "", tt.finishedAs[0], now.Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
				_, before, _ = store.Get(ctx, id)
			}
			if tt.heldBy != nil {
				if err := p.handle(ctx, tt.heldBy); err != nil {
					t.Fatal(err)
				}
				_, before, _ = store.Get(ctx, id)
			}
			if err := p.handle(ctx, tt.scored); err != nil {
				t.Fatalf("handle = %v", err)
			}
			got, rev, err := store.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status() != contracts.Done || got.Decision() != tt.wantDecision || !slices.Equal(got.Reasons, tt.wantReasons) {
				t.Fatalf("finished as %s %s %v, want done %s %v", got.Status(), got.Decision(), got.Reasons, tt.wantDecision, tt.wantReasons)
			}
			if (len(got.Offers) > 0) != tt.wantOffers {
				t.Fatalf("offers %s, want some: %v", got.Offers, tt.wantOffers)
			}
			if before != 0 && rev != before {
				t.Fatalf("a done search was written again (revision %d → %d)", before, rev)
			}
			if tt.wantOffers {
				checkLinks(t, keys, got, tt.scored, now)
			}
		})
	}
}

const testLinkLifetime = 7 * 24 * time.Hour

// testPricer prices with demo and signs links with a key made for the test.
func testPricer(t *testing.T, store *search.Store, demo *catalog.Catalog, now time.Time, maxOffers int) (*pricer, *offerlink.KeySet) {
	t.Helper()
	k, err := offerlink.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	keys := offerlink.NewKeySet(k)
	sealer, err := offerlink.NewSealer(keys, "test")
	if err != nil {
		t.Fatal(err)
	}
	return &pricer{store: store, catalog: func() document.InForce[*catalog.Catalog] {
		return document.InForce[*catalog.Catalog]{Value: demo, Revision: 1}
	},
		ceilings: func() document.InForce[*ceiling.Table] { return document.InForce[*ceiling.Table]{Revision: 1} }, now: func() time.Time { return now },
		links: sealer, linkLifetime: testLinkLifetime, maxOffers: maxOffers, log: zerolog.Nop()}, keys
}

// checkLinks opens every offer's links as the bank's site would (through the conversions
// service, which holds the keys), and checks that each reference states that very offer and
// is stored once, however many links the offer has.
func checkLinks(t *testing.T, keys *offerlink.KeySet, got *contracts.Search, s *contracts.Scored, now time.Time) {
	t.Helper()
	offers, err := contracts.DecodeOffers(got.Data())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Refs) != len(offers) {
		t.Fatalf("%d references stored for %d offers", len(got.Refs), len(offers))
	}
	record, err := contracts.EncodeSearch(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range got.Refs {
		if n := strings.Count(string(record), ref); n != 1 {
			t.Fatalf("the record holds reference %s %d times, want once", ref, n)
		}
	}
	wantExp := now.Add(testLinkLifetime)
	if s.ValidUntil != nil && s.ValidUntil.Before(wantExp) {
		wantExp = *s.ValidUntil
	}
	v := offerlink.NewVerifier(keys, "", func() time.Time { return now })
	for i, o := range offers {
		for _, link := range []string{o.ProposalLink.Link, o.ProposalLink.Deep} {
			if link == "" {
				continue
			}
			if offerlink.RefOf(link) != got.Refs[i] {
				t.Fatalf("offer %d's link %s does not carry its reference %s", i, link, got.Refs[i])
			}
			c, err := v.Verify(link)
			if err != nil {
				t.Fatalf("%s: %v", link, err)
			}
			if c.SearchID != s.Request.SearchID || !contracts.ValidOfferID(c.Offer) || c.ProductType != o.ProductType ||
				c.Decision != o.Decision || c.Amount != o.Amount || c.Rate != o.Rate || (c.Term == nil) != (o.Term == nil) ||
				(o.Term != nil && *c.Term != *o.Term) || c.Expiry != wantExp.Unix() || c.IssuedAt != now.Unix() {
				t.Fatalf("token %+v does not state offer %+v (expiry want %s)", c, o, wantExp)
			}
			if len(link) > offerlink.MaxLinkLength {
				t.Fatalf("link of %d characters", len(link))
			}
		}
	}
}

// A catalog of many products still answers with at most OFFERS_MAX offers, the best ones.
func TestOffersAreCappedBestFirst(t *testing.T) {
	_, _, store := setup(t)
	demo, err := catalog.Demo()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	all := pricing.Price(demo, scored(t, contracts.Approved, "A"))
	if len(all) < 2 {
		t.Fatalf("the demo catalog gives %d loan offers; the test needs two or more", len(all))
	}
	p, _ := testPricer(t, store, demo, now, 1)
	s := scored(t, contracts.Approved, "A")
	if err := p.handle(natstest.Context(t, 10*time.Second), s); err != nil {
		t.Fatal(err)
	}
	got, _, err := store.Get(context.Background(), s.Request.SearchID)
	if err != nil {
		t.Fatal(err)
	}
	offers, err := contracts.DecodeOffers(got.Offers)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 1 || offers[0].TotalCost != all[0].TotalCost {
		t.Fatalf("capped to %d offers (%+v), want the best one of %d", len(offers), offers, len(all))
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The orchestrator must see the service alive while it waits for the provisioner, ready
// only once everything it uses is provisioned, and /readyz must say what is missing.
func TestHealthBeforeTheSearchesBucket(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := startService(t, js, map[string]string{"HEALTH_ADDR": addr})
	var body string
	status := func(path string) int {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return res.StatusCode
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := status("/healthz"); got != 200 {
			return fmt.Errorf("healthz = %d", got)
		}
		return nil
	})
	// Not ready, and /readyz names what is missing.
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := status("/readyz"); got != 503 || !strings.Contains(body, "stream AUDIT: missing") || !strings.Contains(body, "not provisioned as planned") {
			return fmt.Errorf("readyz = %d %s", got, body)
		}
		return nil
	})
	var rep struct{ Failing []string }
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"provisioned", "bucket searches", "stream LOAN", "catalog"} {
		if !slices.Contains(rep.Failing, want) {
			t.Fatalf("readyz before provisioning fails %v, not %q:\n%s", rep.Failing, want, body)
		}
	}
	if _, err := provisiontest.Searches(t, js, 1, search.Options{}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := status("/readyz"); got != 200 {
			return fmt.Errorf("readyz = %d", got)
		}
		return nil
	})
	s.waitRunning(t, js)
}

// Replicas starting together on a fresh three-node cluster race to declare the catalog
// bucket, and the first declarations may time out while the cluster settles: none exits,
// each goes on declaring until it can, and all end up consuming. (They used to exit with
// "ensure bucket catalog: context deadline exceeded".)
func TestReplicasStartingTogetherOnAFreshClusterStay(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	env := map[string]string{"NATS_REPLICAS": "3"}
	var services []*service
	var conns []jetstream.JetStream
	for range 3 {
		_, js := natstest.JetStream(t, c.URLs())
		conns = append(conns, js)
		services = append(services, startService(t, js, env))
	}
	provisiontest.Defaults(t, conns[0], 3) // what the provisioner does, retried as it does
	for i, s := range services {
		s.waitLog(t, 30*time.Second, "offers consuming", 0)
		select {
		case <-s.done:
			t.Fatalf("replica %d exited: %v", i, s.err)
		default:
		}
	}
}

// Without link keys the service does not start: links signed with a key made on the spot
// would verify nowhere.
func TestLinkKeysAreRequired(t *testing.T) {
	if _, err := LoadConfig(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "LINK_KEYS_FILE") {
		t.Fatalf("LoadConfig with no link keys = %v, want an error naming LINK_KEYS_FILE", err)
	}
}
