package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/search"
)

func request(t *testing.T) contracts.LoanRequested {
	t.Helper()
	amount, term := money.Roubles(500000), 36
	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7******5040",
		ProductType: contracts.ProductLoan, Amount: &amount, Term: &term, Props: []string{"yandex-private"},
		RequestedAt: now, Deadline: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return *req
}

// Every finished search reaches the trail, many to a batch, without the masked phone or
// Yandex's props, and with the basis of its decision; a pending one does not; a second
// writer on the same consumer neither loses nor repeats what the first wrote; and Find reads
// a search back, from a start time too.
func TestFinishedSearchesReachTheTrailInBatches(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 60*time.Second)
	store, err := search.Ensure(ctx, js, time.Hour, 1, search.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1200
	ids := make([]string, n)
	offers := []byte(`[{"product_type":"loan"}]`)
	for i := range ids {
		req := request(t)
		ids[i] = req.SearchID
		basis := &contracts.Basis{Catalog: uint64(i + 1), Pricing: contracts.PricingVersion}
		if _, err := store.Finish(ctx, req, "", offers, []string{"approved"}, basis, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	pending := request(t)
	if _, err := store.CreatePending(ctx, contracts.NewSearch(pending, "")); err != nil {
		t.Fatal(err)
	}

	var written atomic.Int64
	run := func(ctx context.Context) {
		w := &Writer{JS: js, Replicas: 1, Retention: DefaultRetention, Log: zerolog.Nop(),
			Written: func(k int) { written.Add(int64(k)) }}
		go func() { _ = w.Run(ctx) }()
	}
	waitWritten := func(want int64) {
		natstest.Eventually(t, 30*time.Second, func() error {
			if got := written.Load(); got < want {
				return fmt.Errorf("%d of %d written", got, want)
			}
			return nil
		})
	}
	// Two replicas' writers share the consumer.
	wctx, stop := context.WithCancel(ctx)
	run(wctx)
	run(wctx)
	waitWritten(n)
	stop()
	// Searches finished while no writer runs are written by the next one, and only they.
	for i := 0; i < 10; i++ {
		req := request(t)
		ids = append(ids, req.SearchID)
		if _, err := store.Finish(ctx, req, "", offers, nil, &contracts.Basis{Catalog: uint64(n + i + 1)}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	run(ctx)
	waitWritten(n + 10)
	s, err := js.Stream(ctx, contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 1 200 searches in a handful of synced writes, not 1 200.
	if got, most := info.State.Msgs, uint64(2*n/MaxBatch+4); got > most {
		t.Errorf("%d batches for %d searches, want at most %d", got, n, most)
	}
	seen := map[string]int{}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < info.State.Msgs; i++ {
		m, err := cons.Next()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data()), "******5040") || strings.Contains(string(m.Data()), "yandex-private") {
			t.Fatalf("a batch keeps the masked phone or the props: %.300s", m.Data())
		}
		b, err := contracts.DecodeAuditBatch(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Records {
			seen[e.SearchID]++
		}
	}
	if len(seen) != n+10 || seen[pending.SearchID] != 0 {
		t.Fatalf("%d searches in the trail (pending one: %d), want the %d finished ones", len(seen), seen[pending.SearchID], n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("search %s written %d times", id, k)
		}
	}

	rec, batches, err := Find(ctx, js, ids[n-1], time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Basis == nil || rec.Basis.Catalog != n || rec.Request.PhoneHash != strings.Repeat("ab", 32) || rec.Request.PhoneMasked != "" {
		t.Errorf("found %+v (basis %+v)", rec.Request, rec.Basis)
	}
	if batches < 2 {
		t.Errorf("the last search found in batch %d, want a later one", batches)
	}
	if _, _, err := Find(ctx, js, pending.SearchID, time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(pending) = %v, want ErrNotFound", err)
	}
	if _, _, err := Find(ctx, js, ids[0], time.Now().Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find from after the trail's end = %v, want ErrNotFound", err)
	}
}
