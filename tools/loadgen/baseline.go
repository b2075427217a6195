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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/embednats"
)

// jetStreamRate is what the disk allows: synced publishes per second that JetStream takes on
// one file stream from publishers publishing at once, each waiting for its ack, with
// messages the size of a search record. The server is embedded and its clients in-process,
// as in the standalone binary, and its store is under dir, on the disk the stack uses.
func jetStreamRate(ctx context.Context, dir string, publishers int, d time.Duration) (float64, error) {
	srv, err := embednats.Start(embednats.Options{Name: "baseline", StoreDir: filepath.Join(dir, "baseline-"+strconv.FormatInt(time.Now().UnixNano(), 36))})
	if err != nil {
		return 0, err
	}
	defer embednats.Stop(srv)
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var streams []jetstream.JetStream
	for range publishers {
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err != nil {
			return 0, err
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return 0, err
		}
		streams = append(streams, js)
	}
	if _, err := streams[0].CreateStream(ctx, jetstream.StreamConfig{
		Name: "BASELINE", Subjects: []string{"baseline.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		return 0, err
	}
	payload := bytes.Repeat([]byte("x"), 900)
	var (
		done atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, publishers)
	)
	stop := time.Now().Add(d)
	start := time.Now()
	for i, js := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := "baseline." + strconv.Itoa(i)
			for time.Now().Before(stop) && ctx.Err() == nil {
				if _, err := js.Publish(ctx, subject, payload); err != nil {
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
