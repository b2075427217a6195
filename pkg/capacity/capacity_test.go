package capacity_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/capacity"
	"github.com/demobank/yacredits/pkg/natstest"
)

func TestUsedAndFull(t *testing.T) {
	for _, tc := range []struct {
		bytes uint64
		max   int64
		used  float64
		full  bool
	}{
		{0, 1000, 0, false},
		{899, 1000, 0.899, false},
		{900, 1000, 0.9, true},
		{1000, 1000, 1, true},
		{5 << 30, -1, 0, false}, // unbounded: never full
		{5 << 30, 0, 0, false},
	} {
		used := capacity.Used(tc.bytes, tc.max)
		if used != tc.used || capacity.Full(used) != tc.full {
			t.Errorf("%d of %d: used %v full %v, want %v %v", tc.bytes, tc.max, used, capacity.Full(used), tc.used, tc.full)
		}
	}
}

// On a real server: the gauge reads a stream's fill, and the broker's refusal of a write
// to a full stream is told from other errors.
func TestGaugeAndIsFull(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 10*time.Second)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}, MaxBytes: 64 << 10,
		Discard: jetstream.DiscardNew, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	g := capacity.New("S", capacity.StreamInfo(js, "S"))
	if g.Fresh() {
		t.Fatal("a gauge never read is fresh")
	}
	if err := g.Poll(ctx); err != nil || g.Used() != 0 || g.Full() || !g.Fresh() {
		t.Fatalf("empty: used %v, %v", g.Used(), err)
	}
	var err error
	for range 100 {
		if _, err = js.Publish(ctx, "s", make([]byte, 4<<10)); err != nil {
			break
		}
	}
	if !capacity.IsFull(err) {
		t.Fatalf("the write beyond the bound: %v, not told as full", err)
	}
	if err := g.Poll(ctx); err != nil || !g.Full() || g.Used() > 1 {
		t.Fatalf("full: used %v, %v", g.Used(), err)
	}
	if capacity.IsFull(errors.New("maximum bytes exceeded")) || capacity.IsFull(context.DeadlineExceeded) {
		t.Error("an error that is not the broker's refusal is told as full")
	}
	if _, err := js.Publish(ctx, "nobody", nil); capacity.IsFull(err) {
		t.Errorf("no stream (%v) told as full", err)
	}
}

// A server at its max_file_store (10023) is full too; an unbounded stream is never fresh,
// so that its metric goes absent rather than read 0 % for ever.
func TestInsufficientResourcesAndUnbounded(t *testing.T) {
	if !capacity.IsFull(fmt.Errorf("create: %w", &jetstream.APIError{Code: 500, ErrorCode: 10023, Description: "insufficient resources"})) {
		t.Error("a server at max_file_store is not told as full")
	}
	if capacity.IsFull(&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "some other store failure"}) {
		t.Error("a store failure that is no limit is told as full")
	}
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 10*time.Second)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "U", Subjects: []string{"u"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	g := capacity.New("U", capacity.StreamInfo(js, "U"))
	if err := g.Poll(ctx); err != nil || g.Fresh() || g.Full() {
		t.Fatalf("an unbounded stream: fresh %v, full %v, %v", g.Fresh(), g.Full(), err)
	}
}
