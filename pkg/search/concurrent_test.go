package search

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
)

// BenchmarkFinishConcurrent is what the searches bucket takes from 64 concurrent finishes
// of records the size offers writes (about 4.5 KB), every write synced: alone, and with a
// watch of the bucket reading each record as it is written, as every gateway has. It is the
// ceiling of the stack's synced rate on this disk, measured apart from the services:
//
//	go test ./pkg/search -run '^$' -bench FinishConcurrent -benchtime 4000x
func BenchmarkFinishConcurrent(b *testing.B) {
	for _, watched := range []bool{false, true} {
		name := "alone"
		if watched {
			name = "watched"
		}
		b.Run(name, func(b *testing.B) { finishConcurrent(b, watched) })
	}
}

func finishConcurrent(b *testing.B, watched bool) {
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	s := ensure(b, js, 1, Options{})
	ctx := natstest.Context(b, 5*time.Minute)
	if watched {
		kv, err := js.KeyValue(ctx, contracts.BucketSearches)
		if err != nil {
			b.Fatal(err)
		}
		w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = w.Stop() }()
		go func() {
			for range w.Updates() {
			}
		}()
	}
	record := json.RawMessage(`[{"product_type":"loan","proposal_link":"` + strings.Repeat("t", 4300) + `"}]`)
	reqs := make(chan contracts.LoanRequested, b.N)
	for i := 0; i < b.N; i++ {
		reqs <- request(b, time.Minute)
	}
	b.SetParallelism(32) // 64 writers on two cores, as offers' 64 handlers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Finish(ctx, <-reqs, "", record, nil, nil, nil, time.Now()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
