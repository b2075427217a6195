//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/embednats"
	"github.com/demobank/yacredits/tools/internal/yandex"
)

// recordBytes is the size of the baseline's messages: what a search keeps in the searches
// bucket for the demo mix (docs/operating.md, "Storage"), so that JetStream alone writes
// what the stack writes.
const recordBytes = 2800

// baseline is JetStream alone, as the standalone runs it: an embedded server whose store
// is under dir, on the disk the stack uses, every write synced, one file stream (or several,
// to see what spreading the records over streams whose syncs overlap would give), and
// in-process clients publishing records to them, each waiting for its ack.
type baseline struct {
	srv     *server.Server
	streams []jetstream.JetStream
	conns   []*nats.Conn
	payload []byte
}

func startBaseline(ctx context.Context, dir string, conns, streams int) (*baseline, error) {
	srv, err := embednats.Start(embednats.Options{Name: "baseline", StoreDir: filepath.Join(dir, "baseline-"+strconv.FormatInt(time.Now().UnixNano(), 36))})
	if err != nil {
		return nil, err
	}
	b := &baseline{srv: srv, payload: bytes.Repeat([]byte("x"), recordBytes)}
	for range conns {
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err != nil {
			b.stop()
			return nil, err
		}
		b.conns = append(b.conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			b.stop()
			return nil, err
		}
		b.streams = append(b.streams, js)
	}
	for i := range streams {
		if _, err := b.streams[0].CreateStream(ctx, jetstream.StreamConfig{
			Name: "BASELINE" + strconv.Itoa(i), Subjects: []string{baselineSubject(i, streams) + ".>"}, Storage: jetstream.FileStorage,
		}); err != nil {
			b.stop()
			return nil, err
		}
	}
	return b, nil
}

func (b *baseline) stop() {
	for _, nc := range b.conns {
		nc.Close()
	}
	embednats.Stop(b.srv)
}

// baselineSubject is where publisher i publishes when there are streams streams: the
// publishers are spread evenly over them.
func baselineSubject(i, streams int) string {
	return "baseline." + strconv.Itoa(i%streams)
}

// jetStreamRate is what the disk allows: synced publishes per second that JetStream takes
// from publishers publishing at once, on streams streams.
func jetStreamRate(ctx context.Context, dir string, publishers, streams int, d time.Duration) (float64, error) {
	b, err := startBaseline(ctx, dir, publishers, streams)
	if err != nil {
		return 0, err
	}
	defer b.stop()
	var (
		done atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, publishers)
	)
	stop := time.Now().Add(d)
	start := time.Now()
	for i, js := range b.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := baselineSubject(i, streams) + "." + strconv.Itoa(i)
			for time.Now().Before(stop) && ctx.Err() == nil {
				if _, err := js.Publish(ctx, subject, b.payload); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, fmt.Errorf("baseline publish: %w", err)
	default:
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}

// jetStreamLatency is the disk's share of a search's latency: JetStream alone taking synced
// publishes at a fixed rate, the open model the stack's latency is measured under, each
// publish timed from when it was due to its ack. Whatever its tail is, a search whose record
// is synced before it is answered has it too.
func jetStreamLatency(ctx context.Context, dir string, rate float64, d time.Duration) (yandex.Quantiles, error) {
	b, err := startBaseline(ctx, dir, 4, 1)
	if err != nil {
		return yandex.Quantiles{}, err
	}
	defer b.stop()
	n := int(rate * d.Seconds())
	took := make([]time.Duration, n)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return yandex.Quantiles{}, ctx.Err()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.streams[i%len(b.streams)].Publish(ctx, baselineSubject(0, 1)+"."+strconv.Itoa(i%16), b.payload); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			took[i] = time.Since(due)
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return yandex.Quantiles{}, fmt.Errorf("baseline publish: %w", err)
	default:
	}
	return yandex.QuantilesOf(took), nil
}
