package gateway

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
)

// What a re-sent search's message has become, judged from the LOAN queue's state: the
// sweeper finishes an overdue search only once the queue has worked through its re-send
// (or stopped moving, or lost it), never while a backlog it sits in is still draining.
func TestProgressOfAResend(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const stale = 2 * time.Second
	stuck := stuckAfter(stale)
	state := func(first, last, msgs uint64, deleted int, at, moved time.Duration) *queueState {
		return &queueState{first: first, last: last, msgs: msgs, deleted: uint64(deleted), at: t0.Add(at), movedAt: t0.Add(moved),
			created: t0.Add(-time.Hour)}
	}
	type read struct {
		q    *queueState
		want progress
	}
	for _, tc := range []struct {
		name  string
		seq   uint64
		reads []read // one after the other, a second apart, on the same entry
	}{
		{"nothing known", 100, []read{{nil, queued}}},
		{"known too long ago", 100, []read{{state(1, 200, 200, 0, -3*time.Second, -3*time.Second), queued}}},
		{"behind a draining backlog", 100, []read{
			{state(50, 900, 850, 0, 0, 0), queued},
			{state(90, 1000, 910, 0, time.Second, time.Second), queued},
		}},
		{"request taken, its scored message not yet", 100, []read{
			{state(120, 1000, 880, 0, 0, 0), queued},                     // drained by 1000
			{state(600, 1300, 700, 0, time.Second, time.Second), queued}, // 1000 still ahead
		}},
		{"request and scored message both worked", 100, []read{
			{state(120, 1000, 880, 0, 0, 0), queued},
			{state(1001, 1400, 400, 0, time.Second, time.Second), worked},
		}},
		{"queue empty", 100, []read{{state(0, 1000, 0, 0, 0, 0), worked}}},
		{"taken out of order: the head is older than the re-send", 100, []read{
			{state(10, 1000, 500, 490, 0, 0), queued},
		}},
		{"queue not moving", 100, []read{{state(50, 900, 850, 0, 0, -stuck), worked}}},
		{"not moving for less than the services' back-offs", 100, []read{{state(50, 900, 850, 0, 0, -stuck+time.Millisecond), queued}}},
		{"stream declared again, its sequences restarted", 100, []read{{state(1, 40, 40, 0, 0, 0), lost}}},
		{"restarted after the request was taken", 100, []read{
			{state(120, 1000, 880, 0, 0, 0), queued},
			{state(1, 30, 30, 0, time.Second, time.Second), lost},
		}},
		{"declared again and grown past the re-send", 100, []read{
			{state(50, 900, 850, 0, 0, 0), queued},
			{func() *queueState { q := state(50, 900, 850, 0, time.Second, time.Second); q.created = t0; return q }(), lost},
		}},
		{"read sent before the re-send was stored", 100, []read{
			{state(1, 99, 99, 0, -time.Millisecond, -time.Millisecond), queued}, // would be lost, were it newer
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &pendingEntry{seq: tc.seq, acked: t0.Add(-time.Microsecond)}
			if tc.name == "read sent before the re-send was stored" {
				e.acked = t0
			}
			for i, r := range tc.reads {
				now := t0.Add(time.Duration(i) * time.Second)
				if got := e.progress(r.q, now, stale, stuck, time.Time{}); got != r.want {
					t.Fatalf("read %d: progress = %d, want %d", i, got, r.want)
				}
			}
		})
	}
}

// A queue that has not moved is not taken for stuck while the broker still refuses sweep
// calls, any search's, nor for the services' back-off after the last refusal: the chaos
// suite's quorum loss left the bucket unavailable for seconds after the cluster was back, and
// the sweeper finished pre-approved searches as rejected before the services' retries came.
func TestARefusalRestartsTheStuckClock(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const stale = 2 * time.Second
	stuck := stuckAfter(stale)
	// Longer than the back-off the work consumers are provisioned with, after a second failure.
	for _, it := range slices.Concat(provision.Work(contracts.ConsumerScoring, contracts.SubjectRequested),
		provision.Work(contracts.ConsumerOffers, contracts.SubjectScored)) {
		if it.Kind != provision.Consumer || len(it.Consumer.BackOff) < 2 {
			continue
		}
		if stuck <= it.Consumer.BackOff[1] {
			t.Fatalf("stuckAfter = %s, not longer than %s's second back-off %s", stuck, it.Name(), it.Consumer.BackOff[1])
		}
	}
	notMoving := &queueState{first: 50, last: 900, msgs: 850, at: t0, movedAt: t0.Add(-time.Minute), created: t0.Add(-time.Hour)}
	for _, tc := range []struct {
		name       string
		refusedAgo time.Duration // 0: never refused
		want       progress
	}{
		{"never refused: stuck", 0, worked},
		{"refused a moment ago: the fault is on", time.Second, queued},
		{"refused within the back-offs and a re-send's interval", stuck - time.Millisecond, queued},
		{"refused longer ago than that: stuck", stuck, worked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &pendingEntry{seq: 100, acked: t0.Add(-time.Minute)}
			var refused time.Time
			if tc.refusedAgo > 0 {
				refused = t0.Add(-tc.refusedAgo)
			}
			if got := e.progress(notMoving, t0, stale, stuck, refused); got != tc.want {
				t.Fatalf("progress = %d, want %d", got, tc.want)
			}
		})
	}
	// Any search's refused call restarts the clock for every search: a refused finish, a
	// refused re-send, even of a search the table no longer holds.
	for _, tc := range []struct {
		name   string
		refuse func(*pendingTable, time.Time)
	}{
		{"a refused finish", func(t *pendingTable, at time.Time) { t.finished("a", 1, false, at, stale) }},
		{"a refused re-send", func(t *pendingTable, at time.Time) { t.resent("a", false, 0, at, at, stale) }},
		{"a refused call for a search gone since", func(t *pendingTable, at time.Time) { t.finished("gone", 1, false, at, stale) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newPendingTable()
			table.pending("a", 1, &contracts.Search{Request: testRequest(t, time.Minute)})
			tc.refuse(table, t0)
			if !table.refused.Equal(t0) {
				t.Fatalf("refused = %v, want %v", table.refused, t0)
			}
		})
	}
}

// The queue counts as moving while its head or its deletions inside change (the services
// acknowledge), and not while only new messages arrive.
func TestQueueStateMoves(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var q *queueState
	q = q.next(&jetstream.StreamInfo{State: jetstream.StreamState{FirstSeq: 10, LastSeq: 20, Msgs: 11}}, t0)
	steps := []struct {
		st    jetstream.StreamState
		moved bool
	}{
		{jetstream.StreamState{FirstSeq: 10, LastSeq: 30, Msgs: 21}, false},               // only published
		{jetstream.StreamState{FirstSeq: 10, LastSeq: 30, Msgs: 20, NumDeleted: 1}, true}, // one inside acknowledged
		{jetstream.StreamState{FirstSeq: 15, LastSeq: 30, Msgs: 16}, true},                // the head moved
		{jetstream.StreamState{FirstSeq: 15, LastSeq: 31, Msgs: 17}, false},
		{jetstream.StreamState{FirstSeq: 32, LastSeq: 31, Msgs: 0}, true}, // empty
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i+1) * time.Second)
		prev := q.movedAt
		q = q.next(&jetstream.StreamInfo{State: s.st}, now)
		if moved := q.movedAt.Equal(now); moved != s.moved || !moved && !q.movedAt.Equal(prev) {
			t.Fatalf("step %d: movedAt = %v (was %v), want moved = %v", i, q.movedAt, prev, s.moved)
		}
	}
}

// What the sweep hands out for an overdue search (spec §5): a search that met no fault is
// finished at its deadline, however recent its last re-send and whatever backlog the queue
// holds (a stuck message elsewhere must not hold every deadline); one that met a fault waits
// while the queue works through its re-send, but not past the allowance; and a re-send stored
// after the last queue read is never taken for lost.
func TestDueForAnOverdueSearch(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const republish = 2 * time.Second
	draining := &queueState{first: 50, last: 900, msgs: 850, at: t0, movedAt: t0} // moving, behind seq 100
	for _, tc := range []struct {
		name      string
		overdueBy time.Duration // now less the deadline
		troubled  bool
		sentAgo   time.Duration
		seq       uint64
		acked     time.Duration // relative to t0
		want      []jobKind
	}{
		{"no fault, before its deadline: nothing yet", -time.Second, false, 3 * time.Second, 100, -3 * time.Second, nil},
		{"no fault, at its deadline: still within it", 0, false, 3 * time.Second, 100, -3 * time.Second, nil},
		{"no fault, just past it: the deadline is kept", time.Millisecond, false, 3 * time.Second, 100, -3 * time.Second, []jobKind{finish}},
		{"no fault: the deadline is kept", 2 * time.Second, false, 3 * time.Second, 100, -3 * time.Second, []jobKind{finish}},
		{"no fault, re-sent a moment ago: the deadline is kept all the same", 2 * time.Second, false, time.Second, 100, -time.Second, []jobKind{finish}},
		{"a fault, before its deadline: nothing yet", -time.Second, true, 3 * time.Second, 100, -3 * time.Second, nil},
		{"a fault: waits for the queue", 2 * time.Second, true, 3 * time.Second, 100, -3 * time.Second, nil},
		{"a fault, re-sent after the last read, past its end", 2 * time.Second, true, 3 * time.Second, 901, time.Millisecond, nil},
		{"a fault, within the allowance: still waits", contracts.Allowance - time.Millisecond, true, 3 * time.Second, 100, -3 * time.Second, nil},
		{"a fault, past the allowance: finished", contracts.Allowance + time.Millisecond, true, 3 * time.Second, 100, -3 * time.Second, []jobKind{finish}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(100 * time.Millisecond)
			req := testRequest(t, time.Minute)
			req.Deadline = now.Add(-tc.overdueBy)
			req.RequestedAt = req.Deadline.Add(-10 * time.Second)
			table, e := tableOf(req)
			e.next, e.wait, e.attempt = now.Add(time.Hour), republish, 1
			e.sentOK, e.acked, e.seq, e.troubled = now.Add(-tc.sentAgo), t0.Add(tc.acked), tc.seq, tc.troubled
			if got := kindsDue(table, now, republish, draining); !slices.Equal(got, tc.want) {
				t.Fatalf("due = %v, want %v", got, tc.want)
			}
		})
	}
}

// A re-send the sweeper planned before the search's deadline but the broker held past it (the
// chaos suite's quorum loss: a cluster just back, slow to store it) is a fault that held the
// search up: its deadline then waits for the queue to work through the re-send, instead of
// finishing a pre-approved client as rejected the moment the re-send lands. One stored in
// time, or just after the deadline but as fast as a publish goes, leaves the deadline as it was.
func TestAResendHeldPastTheDeadlineMetAFault(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const republish = 2 * time.Second
	for _, tc := range []struct {
		name     string
		planned  time.Duration // the sweep that handed the re-send out, less the deadline
		storedBy time.Duration // the re-send's store, less the deadline
		want     []jobKind     // the sweep a second after the deadline, the queue still draining
	}{
		{"stored in time: the deadline is kept", -time.Second, -time.Millisecond, []jobKind{finish}},
		{"stored just after, as fast as a publish: the deadline is kept", -time.Millisecond, time.Millisecond, []jobKind{finish}},
		{"held past the deadline: waits for the queue", -time.Second, 500 * time.Millisecond, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(t, time.Minute)
			req.Deadline = t0
			req.RequestedAt = t0.Add(-10 * time.Second)
			table, e := tableOf(req)
			e.next, e.wait, e.busy = t0.Add(-time.Second), republish, true // a worker has its re-send
			table.resent("k", true, 100, t0.Add(tc.planned), t0.Add(tc.storedBy), republish)
			now := t0.Add(time.Second)
			draining := &queueState{first: 50, last: 900, msgs: 850, at: now, movedAt: now}
			if got := kindsDue(table, now, republish, draining); !slices.Equal(got, tc.want) {
				t.Fatalf("due = %v, want %v", got, tc.want)
			}
		})
	}
}

// A search begun in a fault's shadow (the broker refused a sweep call, any search's, less than
// the allowance before it began, or since) met the fault: the backlog it left holds it, so
// its deadline waits for its re-send to be worked through. One begun longer after the last
// refusal keeps its deadline.
func TestASearchInAFaultsShadowMetIt(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const republish = 2 * time.Second
	for _, tc := range []struct {
		name    string
		refused time.Duration // the last refusal, less the search's start; 0: none
		want    []jobKind     // the sweep a second after its deadline, the queue draining
	}{
		{"no refusal: the deadline is kept", 0, []jobKind{finish}},
		{"refused during its life: waits", 3 * time.Second, nil},
		{"refused just before it began: waits", -10 * time.Second, nil},
		{"refused longer than the allowance before it began: the deadline is kept", -contracts.Allowance - time.Second, []jobKind{finish}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(t, time.Minute)
			req.RequestedAt = t0.Add(-10 * time.Second)
			req.Deadline = t0
			table := newPendingTable()
			table.pending("k", 1, &contracts.Search{Request: req})
			if tc.refused != 0 {
				table.refused = req.RequestedAt.Add(tc.refused)
			}
			e := table.entries["k"]
			now := t0.Add(time.Second)
			e.next, e.wait, e.attempt = now.Add(time.Hour), republish, 1
			e.sentOK, e.acked, e.seq = now.Add(-3*time.Second), now.Add(-3*time.Second), 100
			draining := &queueState{first: 50, last: 900, msgs: 850, at: now, movedAt: now}
			if got := kindsDue(table, now, republish, draining); !slices.Equal(got, tc.want) {
				t.Fatalf("due = %v, want %v", got, tc.want)
			}
		})
	}
}

// tableOf is a sweeper's table holding one pending search of req, under key "k".
func tableOf(req contracts.LoanRequested) (*pendingTable, *pendingEntry) {
	table := newPendingTable()
	table.pending("k", 1, &contracts.Search{Request: req})
	return table, table.entries["k"]
}

// kindsDue is what a sweep at now hands out, by kind.
func kindsDue(table *pendingTable, now time.Time, republish time.Duration, q *queueState) []jobKind {
	var kinds []jobKind
	for _, j := range table.due(now, republish, q) {
		kinds = append(kinds, j.kind)
	}
	return kinds
}

// A pending search whose record expired (no write the watch would show) no longer holds the
// watch's checkpoint back once the sweeper finds it gone: a restart replays only what may
// still be pending.
func TestAnExpiredPendingRecordReleasesTheCheckpoint(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	store, err := provisiontest.Searches(t, js, 1, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	table := newPendingTable()
	n := newNotifier(store, table, 0, zerolog.Nop())
	req := testRequest(t, time.Minute)
	req.Deadline = time.Now().Add(-time.Second) // overdue
	record, err := contracts.EncodeSearch(contracts.NewSearch(req, ""))
	if err != nil {
		t.Fatal(err)
	}
	n.observe(search.EntryOf(req.SearchID, 5, record))
	n.observe(search.EntryOf(uuid.NewString(), 9, nil))
	if cp := n.checkpoint(); cp != 5 {
		t.Fatalf("checkpoint %d with a search pending at revision 5", cp)
	}
	sw := &sweeper{store: store, checkpoint: n.checkpoint, forget: n.forget, table: table, log: zerolog.Nop(),
		tracer: noop.NewTracerProvider().Tracer(""), now: time.Now, republishAfter: time.Second}
	// The bucket does not hold it: it expired.
	sw.work(ctx, job{kind: finish, key: req.SearchID, rev: 5, search: &contracts.Search{Request: req}})
	if cp := n.checkpoint(); cp != 10 {
		t.Errorf("checkpoint %d after the pending search was found gone, want 10", cp)
	}
	if _, pending := n.position(); pending != 0 {
		t.Errorf("%d searches still pending", pending)
	}

	// A finish planned from an older revision never drops a newer pending record of the id
	// (written again meanwhile): its revision still holds the checkpoint.
	n.observe(search.EntryOf(req.SearchID, 12, record))
	sw.work(ctx, job{kind: finish, key: req.SearchID, rev: 5, search: &contracts.Search{Request: req}})
	if cp := n.checkpoint(); cp != 12 {
		t.Errorf("checkpoint %d with the id pending again at revision 12, want 12", cp)
	}
	if _, held := table.entries[req.SearchID]; !held {
		t.Error("the sweeper dropped the id's newer pending record")
	}
}
