package main

import (
	"bytes"
	"context"
	"runtime/trace"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/embednats"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// TestFindsTheStoresSyncs traces a real embedded JetStream, every write synced, while
// messages are published to a file stream, and checks that the report finds the goroutine
// that stored them, one fsync for each, and accounts for its time.
func TestFindsTheStoresSyncs(t *testing.T) {
	srv, err := embednats.Start(embednats.Options{Name: "tracewait", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer embednats.Stop(srv)
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatalf("this test takes an execution trace of its own; run it without -trace: %v", err)
	}
	const n = 50
	for i := range n {
		if _, err := js.Publish(ctx, "t.x", []byte{byte(i)}); err != nil {
			trace.Stop()
			t.Fatal(err)
		}
	}
	trace.Stop()

	r, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Writers) == 0 || r.Writers[0].Writes < n || len(r.Syncs) < n {
		t.Fatalf("found %d writers and %d store fsyncs; want one that synced each of %d messages", len(r.Writers), len(r.Syncs), n)
	}
	w := r.Writers[0]
	if w.Fsync <= 0 || w.Running <= 0 {
		t.Errorf("writer's time: fsync %v, running %v; want both above zero", w.Fsync, w.Running)
	}
	var out strings.Builder
	r.Print(&out, 1)
	if !strings.Contains(out.String(), "in the store's fsync") || !strings.Contains(out.String(), "store fsyncs: ") {
		t.Errorf("report:\n%s", out.String())
	}
}

// TestReportsNoSyncsWhenUnsynced: a trace without per-write syncs says so instead of
// reporting an empty distribution.
func TestReportsNoSyncsWhenUnsynced(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatalf("this test takes an execution trace of its own; run it without -trace: %v", err)
	}
	trace.Stop()
	r, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Print(&out, 1)
	if !strings.Contains(out.String(), "no goroutine synced a stored message") {
		t.Errorf("report of a trace without syncs:\n%s", out.String())
	}
}

// TestJoinsASearchAcrossServices: the tasks the gateway and the two consumers mark for one
// search (telemetry.SearchTask) are joined into one search whose stages add up to its POST.
func TestJoinsASearchAcrossServices(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatalf("this test takes an execution trace of its own; run it without -trace: %v", err)
	}
	const id = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"
	ctx := context.Background()
	post, endPOST := telemetry.SearchTask(ctx, telemetry.TaskPOST, id)
	telemetry.Region(post, telemetry.RegionRetryRead).End()
	for _, kind := range []string{"scoring", "offers"} {
		c, end := telemetry.SearchTask(ctx, kind, id)
		if kind == "offers" {
			r := telemetry.Region(c, telemetry.RegionCreate)
			// Background work beside the write, such as the audit trail's batch write.
			telemetry.Region(ctx, "audit batch write").End()
			time.Sleep(2 * time.Millisecond) // the write: the stage the test finds
			r.End()
		}
		end()
	}
	endPOST()
	_, endOther := telemetry.SearchTask(ctx, telemetry.TaskPOST, "another") // no consumer: left out
	endOther()
	trace.Stop()

	r, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Searches) != 1 || r.Searches[0].ID != id {
		t.Fatalf("searches %+v; want the one search with its consumers", r.Searches)
	}
	s := r.Searches[0]
	var sum time.Duration
	for _, st := range s.Stages {
		sum += st.Took
	}
	if sum != s.POST {
		t.Errorf("stages add up to %v; the POST took %v", sum, s.POST)
	}
	if write := s.Stages[5]; write.Name != "the record's write, sync and ack" || write.Took < 2*time.Millisecond {
		t.Errorf("stage %+v; want the record's write of at least 2 ms", write)
	}
	if len(r.Beside) != 1 || r.Beside[0].Region != "audit batch write" || r.Beside[0].Slowest != 1 || r.Beside[0].All != 1 {
		t.Errorf("beside = %+v; want the one background region, beside the one write", r.Beside)
	}
	var out strings.Builder
	r.Print(&out, 1)
	if !strings.Contains(out.String(), "1 searches whole in the trace") {
		t.Errorf("report:\n%s", out.String())
	}
}
