//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/tools/topology"
)

// runRetained measures what the searches bucket costs per record it keeps: it fills a real
// nats-server process's bucket with n finished searches of three offers each (priced from
// the demo catalog, encoded as the offers service stores them), then reports the bytes per
// record JetStream stores and the disk holds, and the server's resident memory per record.
// Then it starts a gateway on that bucket three times in a row (the first with no
// checkpoint, the next two idle restarts) and reports how long each took to be ready: a
// restart must replay only what is still pending, and say not ready while it does.
//
// The fill is written without the per-write sync, to take minutes rather than an hour:
// what a record costs at rest does not depend on how it was synced.
func runRetained(ctx context.Context, o options, dir string, out io.Writer) error {
	fmt.Fprintln(out, "building nats-server and the gateway ...")
	bin, err := topology.Build(ctx, filepath.Join(dir, "bin"), topology.Programs[0], topology.Programs[1])
	if err != nil {
		return err
	}
	node, err := topology.StartServer(ctx, bin, filepath.Join(dir, "nats"), false)
	if err != nil {
		return err
	}
	defer func() { _ = node.Terminate(30 * time.Second) }()
	nc, err := nats.Connect("nats://"+node.Client, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// What the gateway checks before it is ready, the bucket unbounded: a million records
	// outgrow any laptop's bound, and what a record costs does not depend on it.
	if _, err := provision.Apply(ctx, js, provision.Gateway(provision.Settings{Replicas: 1, SearchRetention: 24 * time.Hour})); err != nil {
		return err
	}
	recs, err := newRecords()
	if err != nil {
		return err
	}
	before, err := node.RSS()
	if err != nil {
		return err
	}
	heapBefore, err := node.HeapInUse(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	encoded, err := fill(ctx, js, o.retained, recs, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "filled %d records in %s\n", o.retained, time.Since(start).Round(time.Second))
	stream, err := js.Stream(ctx, "KV_"+contracts.BucketSearches)
	if err != nil {
		return err
	}
	st := stream.CachedInfo().State
	disk, err := dirBytes(filepath.Join(dir, "nats"))
	if err != nil {
		return err
	}
	rssFilled, _ := node.RSS()
	// Let the server drop the message-block caches a fill warms, as it does when idle.
	time.Sleep(15 * time.Second)
	rssIdle, _ := node.RSS()
	heap, err := node.HeapInUse(ctx)
	if err != nil {
		return err
	}
	n := float64(st.Msgs)
	fmt.Fprintf(out, "a record (up to 3 offers): %.0f bytes as encoded, on average\n", float64(encoded)/n)
	fmt.Fprintf(out, "stored per record: %.0f bytes (JetStream's count), %.0f bytes on disk\n", float64(st.Bytes)/n, float64(disk)/n)
	fmt.Fprintf(out, "nats-server memory per record: %.0f bytes of heap in use after a collection; resident %.0f bytes right after the fill, %.0f idle (%d MiB → %d MiB)\n",
		float64(heap-heapBefore)/n, float64(rssFilled-before)/n, float64(rssIdle-before)/n, before>>20, rssIdle>>20)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	for i, what := range []string{"first start, no checkpoint", "restart", "restart again, idle"} {
		gw, err := topology.NewService(bin, dir, "gateway", fmt.Sprintf("gateway-%d", i), map[string]string{
			"NATS_URL": "nats://" + node.Client, "PHONE_HASH_KEY": hex.EncodeToString(key),
		})
		if err != nil {
			return err
		}
		start := time.Now()
		if err := gw.Start(); err != nil {
			return err
		}
		if err := topology.WaitFor(ctx, 10*time.Minute, func() error { return gw.Ready(ctx) }); err != nil {
			return fmt.Errorf("gateway not ready: %w\n%s", err, gw.Tail(10))
		}
		fmt.Fprintf(out, "gateway %s: ready after %s\n", what, time.Since(start).Round(10*time.Millisecond))
		time.Sleep(2 * time.Second) // a sweep or more: the checkpoint is saved
		if err := gw.Terminate(30 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// records makes finished searches as the offers service stores them: fresh ids and phone
// hashes, amounts and terms spread over the demo catalog's ranges, up to three offers each
// priced from the demo catalog and signed (a proposal link carries its search's id and a
// token), so that what is measured, compression included, is what a day of traffic leaves
// behind.
type records struct {
	variants []variant
	rand     *mrand.Rand
}

type variant struct {
	req    contracts.LoanRequested
	offers []byte // encoded with the placeholder id below
	refs   []string
	reason []string
	basis  *contracts.Basis
}

const placeholderID = "00000000-0000-4000-8000-000000000000"

func newRecords() (*records, error) {
	demo, err := catalog.Demo()
	if err != nil {
		return nil, err
	}
	r := &records{rand: mrand.New(mrand.NewPCG(1, 2))}
	key, err := offerlink.GenerateKey("2026-12")
	if err != nil {
		return nil, err
	}
	sealer, err := offerlink.NewSealer(offerlink.NewKeySet(key), "2026-12")
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	for i := range 400 {
		amount, term := money.Roubles(int64(10_000+r.rand.IntN(990_000))), 6+r.rand.IntN(55)
		product := contracts.ProductLoan
		if i%3 == 0 {
			product = contracts.ProductCreditCard
		}
		req := contracts.LoanRequested{SearchID: placeholderID, PhoneHash: strings.Repeat("5d", 32), PhoneMasked: "+7933***5040",
			ProductType: product, Amount: &amount, Props: []string{"yandex"}, RequestedAt: now, Deadline: now.Add(10 * time.Second)}
		if product == contracts.ProductLoan {
			req.Term = &term
		}
		grade := []string{"A", "B", "C"}[r.rand.IntN(3)]
		scored, err := contracts.NewScored(contracts.Scored{Request: req, Verdict: contracts.Approved, Kind: contracts.PreApproved,
			Amount: &contracts.AmountRange{Min: money.Roubles(10_000), Max: amount}, Grade: grade,
			Reasons: []string{"approved"}, ScoredAt: now})
		if err != nil {
			return nil, err
		}
		scored.Basis = &contracts.ScoreBasis{Snapshot: strings.Repeat("c0", 32), Policy: 1,
			Row: &contracts.PreapprovalRow{Kind: contracts.PreApproved, Limit: amount, Grade: grade, ValidUntil: now.AddDate(0, 3, 0)}}
		// Priced as offers prices, so that the record holds the basis it keeps in service.
		priced := offers.Price(document.InForce[*catalog.Catalog]{Value: demo, Revision: 1},
			document.InForce[*ceiling.Table]{Value: nil, Revision: 1}, scored, now, 7*24*time.Hour, 3)
		quotes := priced.Quotes
		// Sealed as offers seals them, one reference an offer stored apart (the search id
		// sealed in it is the placeholder: the same length as any other).
		sealed, refs := make([]contracts.Offer, len(quotes)), make([]string, len(quotes))
		for i, q := range quotes {
			sealed[i] = q.Offer
			if refs[i], err = sealer.Seal(&sealed[i], offerlink.ForOffer(req.SearchID, q.ProductID, q.Offer, now, now.Add(7*24*time.Hour))); err != nil {
				return nil, err
			}
		}
		data, err := contracts.EncodeOffers(sealed)
		if err != nil {
			return nil, err
		}
		r.variants = append(r.variants, variant{req: req, offers: data, refs: refs, reason: priced.Reasons, basis: priced.Basis})
	}
	return r, nil
}

// next is a record under a fresh id.
func (r *records) next() (string, []byte, error) {
	v := r.variants[r.rand.IntN(len(r.variants))]
	id := uuid.NewString()
	req := v.req
	req.SearchID = id
	hash := make([]byte, 32)
	_, _ = rand.Read(hash)
	req.PhoneHash = hex.EncodeToString(hash)
	s := contracts.NewSearch(req, "00-"+hex.EncodeToString(hash[:16])+"-"+hex.EncodeToString(hash[16:24])+"-01")
	done, err := s.Finish(bytes.ReplaceAll(v.offers, []byte(placeholderID), []byte(id)), v.reason, time.Now())
	if err != nil {
		return "", nil, err
	}
	if err := done.SetRefs(v.refs); err != nil {
		return "", nil, err
	}
	done.Basis = v.basis
	data, err := contracts.EncodeSearch(done)
	return id, data, err
}

// fill writes n records, as the offers service's creates do (the same subject and header),
// many at a time.
func fill(ctx context.Context, js jetstream.JetStream, n int, recs *records, out io.Writer) (int, error) {
	report, total := time.Now(), 0
	for i := 0; i < n; i++ {
		id, data, err := recs.next()
		if err != nil {
			return 0, err
		}
		total += len(data)
		msg := &nats.Msg{Subject: "$KV." + contracts.BucketSearches + "." + id, Data: data, Header: nats.Header{}}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			return 0, err
		}
		if time.Since(report) > 10*time.Second {
			fmt.Fprintf(out, "  %d of %d\n", i, n)
			report = time.Now()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return total, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(5 * time.Minute):
		return 0, errors.New("the fill did not complete")
	}
}

func dirBytes(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	return total, err
}
