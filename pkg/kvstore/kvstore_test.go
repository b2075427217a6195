package kvstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSearch(t testing.TB) *contracts.Search {
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
		RequestedAt: now,
		Deadline:    now.Add(10 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	return contracts.NewSearch(*req, []string{"p"})
}

func ensure(t testing.TB, js jetstream.JetStream, replicas int) *Store {
	t.Helper()
	var s *Store
	natstest.Eventually(t, 20*time.Second, func() (err error) {
		s, err = Ensure(context.Background(), js, time.Hour, replicas)
		return err
	})
	return s
}

func TestCreateIsAtomic(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	s := ensure(t, js, 1)
	ctx := natstest.Context(t, 10*time.Second)
	search := newSearch(t)
	if _, err := s.Create(ctx, search); err != nil {
		t.Fatal(err)
	}
	other := *search
	other.Props = []string{"changed"}
	if _, err := s.Create(ctx, &other); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	got, _, err := s.Get(ctx, search.Request.SearchID)
	if err != nil || got.Props[0] != "p" || got.Status != contracts.Pending {
		t.Fatalf("stored record changed: %+v %v", got, err)
	}
	if _, _, err := s.Get(ctx, uuid.NewString()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
}

// Many writers race to finish one search, each with its own offers; exactly one wins and
// the record holds its offers. Run against one server and against a replicated bucket on a
// three-node cluster, where old clients missed revision conflicts.
func TestFinishFirstWriterWins(t *testing.T) {
	single := func(t *testing.T) (jetstream.JetStream, int) {
		srv := natstest.RunServer(t)
		_, js := natstest.JetStream(t, srv.ClientURL())
		return js, 1
	}
	cluster := func(t *testing.T) (jetstream.JetStream, int) {
		c := natstest.RunCluster(t, 3)
		_, js := natstest.JetStream(t, c.URLs())
		return js, 3
	}
	for name, setup := range map[string]func(*testing.T) (jetstream.JetStream, int){"R1": single, "R3": cluster} {
		t.Run(name, func(t *testing.T) {
			js, replicas := setup(t)
			s := ensure(t, js, replicas)
			ctx := natstest.Context(t, 30*time.Second)
			search := newSearch(t)
			if _, err := s.Create(ctx, search); err != nil {
				t.Fatal(err)
			}
			const writers = 12
			var wg sync.WaitGroup
			wins := make(chan string, writers)
			for i := 0; i < writers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					reason := fmt.Sprintf("writer-%d", i)
					_, err := s.Finish(ctx, search.Request.SearchID, nil, []string{reason}, time.Now())
					switch {
					case err == nil:
						wins <- reason
					case !errors.Is(err, contracts.ErrAlreadyDone):
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
			if len(winners) != 1 {
				t.Fatalf("winners = %v, want exactly one", winners)
			}
			got, _, err := s.Get(ctx, search.Request.SearchID)
			if err != nil || got.Status != contracts.Done || got.Reasons[0] != winners[0] {
				t.Fatalf("record = %+v, %v; want done by %s", got, err, winners[0])
			}
		})
	}
}

func TestOpenWaitsForTheBucket(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 10*time.Second)
	opened := make(chan error, 1)
	go func() {
		_, err := Open(ctx, js)
		opened <- err
	}()
	ensure(t, js, 1)
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, js2 := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	if _, err := Open(short, js2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open on a server without the bucket: %v, want a deadline error", err)
	}
}

// BenchmarkCreateFinish measures the two durable writes every search costs, with every
// write synced to disk as in production.
func BenchmarkCreateFinish(b *testing.B) {
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	s := ensure(b, js, 1)
	ctx := context.Background()
	searches := make([]*contracts.Search, b.N)
	for i := range searches {
		searches[i] = newSearch(b)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Create(ctx, searches[i]); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Finish(ctx, searches[i].Request.SearchID, nil, nil, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// A poll must never see a done search as pending again, so reads go to the leader.
func TestReadsComeFromTheLeader(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	_, js := natstest.JetStream(t, c.URLs())
	ensure(t, js, 3)
	s, err := js.Stream(context.Background(), "KV_"+contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.AllowDirect {
		t.Fatal("the searches bucket allows direct gets from any replica")
	}
}
