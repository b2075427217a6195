package search

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
)

// The watch delivers every write once, in the bucket's order: what the bucket held from the
// start revision, then each new write, with the writes its republish never brought (here:
// made while the stream republished nothing) read in their place, and the end of the replay
// said once. It makes no consumer, which could be set to deliver anywhere.
func TestWatchFollowsWithoutAConsumer(t *testing.T) {
	js, replicas := single(t)
	s := ensure(t, js, replicas, Options{Log: zerolog.Nop()})
	ctx := natstest.Context(t, time.Minute)
	kv, err := js.KeyValue(ctx, contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string) uint64 {
		t.Helper()
		rev, err := kv.Put(ctx, key, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	stream, err := js.Stream(ctx, "KV_"+contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	republish := func(on bool) {
		t.Helper()
		cfg := stream.CachedInfo().Config
		cfg.RePublish = nil
		if on {
			cfg.RePublish = BucketConfig(0, 1).RePublish
		}
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}

	put("a")
	from := put("b")
	put("c")
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var got []string
	next := func() {
		t.Helper()
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		e, caughtUp, err := w.Next(nctx)
		switch {
		case err != nil:
			t.Fatalf("after %v: %v", got, err)
		case caughtUp:
			got = append(got, "caught up")
		case e.Gone:
			got = append(got, fmt.Sprintf("%d %s gone", e.Revision, e.Key))
		default:
			got = append(got, fmt.Sprintf("%d %s", e.Revision, e.Key))
		}
	}
	for range 4 {
		next()
	}
	put("d")
	next()
	republish(false)
	put("e")
	put("f")
	republish(true)
	put("g")
	for range 3 {
		next()
	}
	want := []string{"2 b", "3 c", "4 a gone", "caught up", "5 d", "6 e", "7 f", "8 g"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %q\nwant      %q", got, want)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers on the bucket, want none", info.State.Consumers)
	}
}
