//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/cmd/internal/topology"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/pricing"
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
	if _, err := search.Ensure(ctx, js, 24*time.Hour, 1, search.Options{}); err != nil {
		return err
	}
	record, err := sampleRecord()
	if err != nil {
		return err
	}
	before, err := node.RSS()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := fill(ctx, js, o.retained, record, out); err != nil {
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
	n := float64(st.Msgs)
	fmt.Fprintf(out, "a record of %d offers: %d bytes as encoded\n", 3, len(record))
	fmt.Fprintf(out, "stored per record: %.0f bytes (JetStream's count), %.0f bytes on disk\n", float64(st.Bytes)/n, float64(disk)/n)
	fmt.Fprintf(out, "nats-server memory per record: %.0f bytes right after the fill, %.0f bytes idle (resident %d MiB → %d MiB)\n",
		float64(rssFilled-before)/n, float64(rssIdle-before)/n, before>>20, rssIdle>>20)

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

// sampleRecord is a finished search with three loan offers, as the offers service stores it.
func sampleRecord() ([]byte, error) {
	demo, err := catalog.Demo()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	amount, term := money.Roubles(500_000), 36
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("5d", 32), PhoneMasked: "+7933***5040",
		ProductType: contracts.ProductLoan, Amount: &amount, Term: &term, Props: []string{"yandex"},
		RequestedAt: now, Deadline: now.Add(10 * time.Second),
	})
	if err != nil {
		return nil, err
	}
	scored, err := contracts.NewScored(contracts.Scored{Request: *req, Verdict: contracts.Approved, Kind: contracts.PreApproved,
		Amount: &contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(1_000_000)}, Grade: "A",
		Reasons: []string{"approved"}, ScoredAt: now})
	if err != nil {
		return nil, err
	}
	offers := pricing.Price(demo, scored)
	if len(offers) < 3 {
		return nil, fmt.Errorf("the demo catalog prices %d loan offers, want 3", len(offers))
	}
	data, err := contracts.EncodeOffers(offers[:3])
	if err != nil {
		return nil, err
	}
	done, err := contracts.NewSearch(*req, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").Finish(data, scored.Reasons, now)
	if err != nil {
		return nil, err
	}
	return contracts.EncodeSearch(done)
}

// fill writes n records under fresh ids, as the offers service's creates do (the same
// subject and header), many at a time.
func fill(ctx context.Context, js jetstream.JetStream, n int, record []byte, out io.Writer) error {
	report := time.Now()
	for i := 0; i < n; i++ {
		msg := &nats.Msg{Subject: "$KV." + contracts.BucketSearches + "." + uuid.NewString(), Data: record, Header: nats.Header{}}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			return err
		}
		if time.Since(report) > 10*time.Second {
			fmt.Fprintf(out, "  %d of %d\n", i, n)
			report = time.Now()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Minute):
		return errors.New("the fill did not complete")
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
