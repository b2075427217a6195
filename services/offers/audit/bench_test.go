package audit

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/services/offers/pricing"
)

// BenchmarkAuditTrail measures, on one synced server, what the trail costs a search against
// the one synced write every search already takes: "finish" is b.N searches written to the
// bucket by 16 writers (one synced write each, as offers writes them), "trail" the same
// searches moved to the AUDIT stream by one writer. The ratio trail/finish is the trail's
// share of a search's disk cost.
func BenchmarkAuditTrail(b *testing.B) {
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	ctx := context.Background()
	store, err := provisiontest.Searches(b, js, 1, search.Options{Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	// Records as offers writes them: three offers of the demo catalog, their links' references
	// sealed for each search (random to a compressor) and stored once an offer.
	reqs := make([]contracts.LoanRequested, b.N)
	offers := make([][]byte, b.N)
	refs := make([][]string, b.N)
	demo, err := catalog.Parse(catalog.DemoJSON())
	if err != nil {
		b.Fatal(err)
	}
	key, err := offerlink.GenerateKey("bench")
	if err != nil {
		b.Fatal(err)
	}
	sealer, err := offerlink.NewSealer(offerlink.NewKeySet(key), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for i := range reqs {
		reqs[i] = benchRequest(b)
		s := &contracts.Scored{Request: reqs[i], Verdict: contracts.Approved, Kind: contracts.PreApproved, Grade: "A",
			Amount: &contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)}, ScoredAt: time.Now()}
		quotes := pricing.Quotes(demo, s, ceiling.Limits{}).Quotes
		signed := make([]contracts.Offer, 0, 3)
		for _, q := range quotes[:min(3, len(quotes))] {
			o := q.Offer
			ref, err := sealer.Seal(&o, offerlink.ForOffer(s.Request.SearchID, q.ProductID, o, time.Now(), time.Now().Add(7*24*time.Hour)))
			if err != nil {
				b.Fatal(err)
			}
			signed, refs[i] = append(signed, o), append(refs[i], ref)
		}
		if offers[i], err = contracts.EncodeOffers(signed); err != nil {
			b.Fatal(err)
		}
	}
	basis := &contracts.Basis{ScoreBasis: contracts.ScoreBasis{Snapshot: strings.Repeat("c0", 32), Policy: 1},
		Catalog: 1, Ceilings: 1, Pricing: contracts.PricingVersion, MaxOffers: 10,
		Trail: map[string]string{"cash-standard": "offered", "cash-insured": "offered", "cash-express": "offered"}}
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if _, err := store.Finish(ctx, reqs[i], "", offers[i], refs[i], []string{"approved"}, basis, time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	finish := time.Since(start)

	start = time.Now()
	var written atomic.Int64
	var batches atomic.Int64
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w := &Writer{JS: js, Log: zerolog.Nop(), Pseudonyms: testPseudonyms,
		Written: func(n int) { written.Add(int64(n)); batches.Add(1) }}
	go func() { _ = w.Run(wctx) }()
	for written.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	trail := time.Since(start)
	b.StopTimer()
	stream, err := js.Stream(ctx, contracts.StreamAudit)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(stream.CachedInfo().State.Bytes)/float64(b.N), "trail-bytes/search")
	b.ReportMetric(float64(dirSize(b, filepath.Join(srv.JetStreamConfig().StoreDir, "$G", "streams", contracts.StreamAudit)))/float64(b.N), "trail-disk-bytes/search")
	b.ReportMetric(float64(finish.Nanoseconds())/float64(b.N), "finish-ns/search")
	b.ReportMetric(float64(trail.Nanoseconds())/float64(b.N), "trail-ns/search")
	b.ReportMetric(float64(trail)/float64(finish), "trail/finish")
	b.ReportMetric(float64(b.N)/float64(batches.Load()), "searches/batch")
}

// dirSize is the bytes of the files under dir.
func dirSize(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
