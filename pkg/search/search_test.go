package search

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func request(t testing.TB, deadline time.Duration) contracts.LoanRequested {
	t.Helper()
	amount, term := money.Roubles(500000), 36
	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID:    uuid.NewString(),
		PhoneHash:   "2687a8d35edbe2b03c02217de3e2878819ee793ded189dfd07eb550237d13c09",
		PhoneMasked: "+7933***5040",
		ProductType: contracts.ProductLoan,
		Amount:      &amount,
		Term:        &term,
		Props:       []string{"p"},
		RequestedAt: now,
		Deadline:    now.Add(deadline),
	})
	if err != nil {
		t.Fatal(err)
	}
	return *req
}

// ensure makes the bucket as the provisioner does (package provision, which imports this
// one): through the key-value API, then its reads switched to the stream's leader; and
// binds to it.
func ensure(t testing.TB, js jetstream.JetStream, replicas int, o Options) *Store {
	t.Helper()
	var s *Store
	natstest.Eventually(t, 20*time.Second, func() (err error) {
		ctx := context.Background()
		if _, err := js.CreateKeyValue(ctx, BucketConfig(time.Hour, replicas)); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return err
		}
		st, err := js.Stream(ctx, "KV_"+contracts.BucketSearches)
		if err != nil {
			return err
		}
		if cfg := st.CachedInfo().Config; cfg.AllowDirect {
			cfg.AllowDirect = false
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				return err
			}
		}
		s, err = Bind(ctx, js, o)
		return err
	})
	return s
}

func single(t *testing.T) (jetstream.JetStream, int) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	return js, 1
}

func cluster(t *testing.T) (jetstream.JetStream, int) {
	c := natstest.RunCluster(t, 3)
	_, js := natstest.JetStream(t, c.URLs())
	return js, 3
}

var offers = []byte(`[{"product_type":"loan"}]`)

// records counts the messages the bucket's stream holds: its durable writes, since the
// bucket keeps one revision per key and these tests write distinct keys.
func writes(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_"+contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

func TestCreatePendingIsAtomic(t *testing.T) {
	js, _ := single(t)
	s := ensure(t, js, 1, Options{})
	ctx := natstest.Context(t, 10*time.Second)
	req := request(t, time.Minute)
	if _, err := s.CreatePending(ctx, contracts.NewSearch(req, "")); err != nil {
		t.Fatal(err)
	}
	other := req
	other.Props = []string{"changed"}
	if _, err := s.CreatePending(ctx, contracts.NewSearch(other, "")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	got, _, err := s.Get(ctx, req.SearchID)
	if err != nil || got.Request.Props[0] != "p" || got.Status() != contracts.Pending {
		t.Fatalf("stored record changed: %+v %v", got, err)
	}
	if _, _, err := s.Get(ctx, uuid.NewString()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
}

// The common path: offers finishes a search that has no record yet with one durable write.
func TestFinishWithoutARecordIsOneWrite(t *testing.T) {
	js, _ := single(t)
	s := ensure(t, js, 1, Options{})
	ctx := natstest.Context(t, 10*time.Second)
	req := request(t, time.Minute)
	before := writes(t, js)
	done, err := s.Finish(ctx, req, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", offers, nil, []string{"approved"}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n := writes(t, js) - before; n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	got, _, err := s.Get(ctx, req.SearchID)
	if err != nil || got.Status() != contracts.Done || got.Decision() != contracts.HasApprove || string(got.Offers) != string(offers) ||
		!got.Request.SameAs(req) || got.Request.Props[0] != "p" || got.Trace != done.Trace {
		t.Fatalf("record = %+v, %v", got, err)
	}
}

// The budget ran out first: the gateway wrote the pending record, and offers finishes it.
// A result for a different request under the same id leaves the record alone.
func TestFinishOntoThePendingRecord(t *testing.T) {
	js, _ := single(t)
	s := ensure(t, js, 1, Options{})
	ctx := natstest.Context(t, 10*time.Second)
	req := request(t, time.Minute)
	if _, err := s.CreatePending(ctx, contracts.NewSearch(req, "")); err != nil {
		t.Fatal(err)
	}
	other := req
	other.ProductType = contracts.ProductCreditCard
	if _, err := s.Finish(ctx, other, "", offers, nil, nil, nil, time.Now()); !errors.Is(err, ErrConflict) {
		t.Fatalf("another request's finish: %v, want ErrConflict", err)
	}
	if got, _, _ := s.Get(ctx, req.SearchID); got.Status() != contracts.Pending {
		t.Fatalf("another request's result finished the record: %+v", got)
	}
	if _, err := s.Finish(ctx, req, "", offers, nil, nil, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Get(ctx, req.SearchID)
	if err != nil || got.Status() != contracts.Done || string(got.Offers) != string(offers) {
		t.Fatalf("record = %+v, %v", got, err)
	}
	again, err := s.Finish(ctx, req, "", nil, nil, []string{"late"}, nil, time.Now())
	if !errors.Is(err, contracts.ErrAlreadyDone) || string(again.Offers) != string(offers) {
		t.Fatalf("a second finish: %+v, %v; want the first one, ErrAlreadyDone", again, err)
	}
}

// Many writers race to end one search, offers' creates and CAS finishes against the
// deadline and dead letters; exactly one wins and the record holds its result. On one
// server and on a replicated bucket of a three-node cluster, where the leader refuses a
// create while another is still replicating (reported as "exists" before it is readable).
func TestFirstEndingWins(t *testing.T) {
	for name, setup := range map[string]func(*testing.T) (jetstream.JetStream, int){"R1": single, "R3": cluster} {
		t.Run(name, func(t *testing.T) {
			js, replicas := setup(t)
			s := ensure(t, js, replicas, Options{})
			ctx := natstest.Context(t, 30*time.Second)
			req := request(t, time.Millisecond) // overdue by the time it is written
			const writers = 12
			var wg sync.WaitGroup
			wins := make(chan string, writers)
			for i := 0; i < writers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					reason := fmt.Sprintf("writer-%d", i)
					var err error
					switch i % 3 {
					case 0:
						_, err = s.Finish(ctx, req, "", offers, nil, []string{reason}, nil, time.Now())
					case 1:
						_, err = s.Reject(ctx, req.SearchID, &req, "", reason, time.Now())
					default:
						if _, err = s.CreatePending(ctx, contracts.NewSearch(req, "")); errors.Is(err, ErrExists) {
							err = contracts.ErrAlreadyDone // nothing to win
						}
						reason = "pending"
					}
					switch {
					case err == nil && reason != "pending":
						wins <- reason
					case err != nil && !errors.Is(err, contracts.ErrAlreadyDone):
						t.Errorf("%s: %v", reason, err)
					}
				}()
			}
			wg.Wait()
			close(wins)
			var winners []string
			for w := range wins {
				winners = append(winners, w)
			}
			got, _, err := s.Get(ctx, req.SearchID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status() == contracts.Pending {
				// A pending create won the race: the deadline ends it, once.
				if len(winners) != 0 {
					t.Fatalf("winners %v over a pending record", winners)
				}
				if _, err := s.FinishAtDeadline(ctx, req.SearchID, time.Now().Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				return
			}
			if len(winners) != 1 || got.Reasons[0] != winners[0] {
				t.Fatalf("winners = %v, record %+v; want exactly one, and its result stored", winners, got)
			}
		})
	}
}

// A create that finds the id taken reads the record, on a replicated bucket too, where the
// winning write may not be readable yet: Settled never reports it missing.
func TestConcurrentCreatesSettleOnTheRecord(t *testing.T) {
	js, replicas := cluster(t)
	s := ensure(t, js, replicas, Options{})
	ctx := natstest.Context(t, 30*time.Second)
	for range 5 {
		req := request(t, time.Minute)
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.CreatePending(ctx, contracts.NewSearch(req, ""))
				if errors.Is(err, ErrExists) {
					if _, _, err = s.Settled(ctx, req.SearchID); err != nil {
						t.Errorf("settled: %v", err)
					}
				} else if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}

func TestFinishAtDeadlineOnlyWhenOverdue(t *testing.T) {
	js, _ := single(t)
	s := ensure(t, js, 1, Options{})
	ctx := natstest.Context(t, 10*time.Second)
	req := request(t, time.Hour)
	if _, err := s.CreatePending(ctx, contracts.NewSearch(req, "")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FinishAtDeadline(ctx, req.SearchID, time.Now()); err == nil || got.Status() != contracts.Pending {
		t.Fatalf("finished before its deadline: %+v, %v", got, err)
	}
	got, err := s.FinishAtDeadline(ctx, req.SearchID, req.Deadline.Add(time.Millisecond))
	if err != nil || got.Decision() != contracts.Rejected || got.Reasons[0] != contracts.ReasonDeadline {
		t.Fatalf("at the deadline: %+v, %v", got, err)
	}
}

// Every way a search ends is counted and logged once, in the one funnel: offers, a dead
// letter and the deadline. (The deadline path used to write around it: its panel was empty.)
func TestEveryEndingIsCountedAndLogged(t *testing.T) {
	js, _ := single(t)
	reader := sdkmetric.NewManualReader()
	var logs strings.Builder
	var mu sync.Mutex
	s := ensure(t, js, 1, Options{Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Log: zerolog.New(zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		})))})
	ctx := natstest.Context(t, 10*time.Second)
	if _, err := s.Finish(ctx, request(t, time.Minute), "", offers, nil, nil, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	dead := request(t, time.Minute)
	if _, err := s.Reject(ctx, dead.SearchID, &dead, "", contracts.ReasonDeadLetter, time.Now()); err != nil {
		t.Fatal(err)
	}
	late := request(t, time.Millisecond)
	if _, err := s.CreatePending(ctx, contracts.NewSearch(late, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAtDeadline(ctx, late.SearchID, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range d.DataPoints {
					dec, _ := p.Attributes.Value("decision")
					sums[m.Name+"/"+dec.AsString()] += p.Value
				}
			}
		}
	}
	want := map[string]int64{"credits.searches/has_approve": 1, "credits.searches/rejected": 2, "credits.searches.deadline_exceeded/": 1}
	for k, v := range want {
		if sums[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, sums[k], v, sums)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, by := range []string{`"by":"offers"`, `"by":"dead_letter"`, `"by":"deadline"`} {
		if strings.Count(logs.String(), by) != 1 {
			t.Errorf("log lines with %s: %d, want 1\n%s", by, strings.Count(logs.String(), by), logs.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestOpenWaitsForTheBucket(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 10*time.Second)
	opened := make(chan error, 1)
	go func() {
		_, err := Open(ctx, js, Options{})
		opened <- err
	}()
	ensure(t, js, 1, Options{})
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, js2 := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	if _, err := Open(short, js2, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open on a server without the bucket: %v, want a deadline error", err)
	}
}

// A poll must never see a done search as pending again, so reads go to the leader.
func TestReadsComeFromTheLeader(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	_, js := natstest.JetStream(t, c.URLs())
	ensure(t, js, 3, Options{})
	s, err := js.Stream(context.Background(), "KV_"+contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.AllowDirect {
		t.Fatal("the searches bucket allows direct gets from any replica")
	}
}

// BenchmarkFinish measures the one durable write a search costs in the common path, synced
// to disk as in production:
//
//	go test ./pkg/search -run '^$' -bench Finish -benchtime 2000x
func BenchmarkFinish(b *testing.B) {
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	s := ensure(b, js, 1, Options{})
	ctx := context.Background()
	reqs := make([]contracts.LoanRequested, b.N)
	for i := range reqs {
		reqs[i] = request(b, time.Minute)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Finish(ctx, reqs[i], "", offers, nil, nil, nil, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// The deadline rule (spec §5), in the one funnel: offers finish a pending search until its
// deadline, and after it for the allowance a fault may have taken (the sweeper finishes a
// search that met none at its deadline; the first ending stands); never later. Later offers
// end it rejected for its deadline, without a basis, since no decision made that answer. A
// search with no record (never answered 200) is created as decided, however late.
func TestTheDeadlineRuleInTheFunnel(t *testing.T) {
	js, replicas := single(t)
	s := ensure(t, js, replicas, Options{})
	ctx := context.Background()
	basis := &contracts.Basis{Pricing: contracts.PricingVersion}
	for _, tt := range []struct {
		name       string
		pending    bool
		after      time.Duration // finish time less the deadline
		wantOffers bool
	}{
		{"before its deadline", true, -time.Second, true},
		{"at its deadline", true, 0, true},
		{"after it, within the allowance (a fault held it up)", true, 30 * time.Second, true},
		{"at the allowance's end", true, contracts.Allowance, true},
		{"past the allowance", true, contracts.Allowance + time.Millisecond, false},
		{"never accepted: no record, however late", false, 2 * contracts.Allowance, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := request(t, 10*time.Second)
			if tt.pending {
				if _, err := s.CreatePending(ctx, contracts.NewSearch(req, "")); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Finish(ctx, req, "", offers, nil, []string{"approved"}, basis, req.Deadline.Add(tt.after))
			if err != nil {
				t.Fatal(err)
			}
			stored, _, err := s.Get(ctx, req.SearchID)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range []*contracts.Search{got, stored} {
				if has := rec.Offers != nil; has != tt.wantOffers {
					t.Fatalf("ended with offers %v (%s), want %v", has, rec.Reasons, tt.wantOffers)
				}
				if !tt.wantOffers && (rec.Reasons[0] != contracts.ReasonDeadline || rec.Basis != nil) {
					t.Fatalf("a late finish ended %v with basis %v, want rejected for its deadline without one", rec.Reasons, rec.Basis)
				}
				if at := req.Deadline.Add(tt.after); !rec.DoneAt.Equal(at.UTC()) {
					t.Fatalf("done at %v, want when it ended, %v", rec.DoneAt, at)
				}
				if tt.wantOffers && rec.Basis == nil {
					t.Fatal("the decision's basis was not kept")
				}
			}
		})
	}
}

// BenchmarkAnswerMissing is what the retry rule adds to a new search: one read from the
// bucket's leader of a key it does not hold yet (go test ./pkg/search -run '^$' -bench
// AnswerMissing). It reports the wall time of one read from one client and the CPU of the
// whole process (client and server) per read.
func BenchmarkAnswerMissing(b *testing.B) {
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	s := ensure(b, js, 1, Options{})
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.Answer(ctx, ids[i]); !errors.Is(err, ErrNotFound) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/read")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
