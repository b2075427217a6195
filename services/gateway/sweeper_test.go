package gateway

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// What a re-sent search's message has become, judged from the LOAN queue's state: the
// sweeper finishes an overdue search only once the queue has worked through its re-send
// (or stopped moving, or lost it), never while a backlog it sits in is still draining.
func TestProgressOfAResend(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const stale = 2 * time.Second
	state := func(first, last, msgs uint64, deleted int, at, moved time.Duration) *queueState {
		return &queueState{first: first, last: last, msgs: msgs, deleted: uint64(deleted), at: t0.Add(at), movedAt: t0.Add(moved)}
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
		{"queue not moving", 100, []read{{state(50, 900, 850, 0, 0, -stale), worked}}},
		{"stream declared again, its sequences restarted", 100, []read{{state(1, 40, 40, 0, 0, 0), lost}}},
		{"restarted after the request was taken", 100, []read{
			{state(120, 1000, 880, 0, 0, 0), queued},
			{state(1, 30, 30, 0, time.Second, time.Second), lost},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &pendingEntry{seq: tc.seq}
			for i, r := range tc.reads {
				now := t0.Add(time.Duration(i) * time.Second)
				if got := e.progress(r.q, now, stale); got != r.want {
					t.Fatalf("read %d: progress = %d, want %d", i, got, r.want)
				}
			}
		})
	}
}

// The queue counts as moving while its head or its deletions inside change (the services
// acknowledge), and not while only new messages arrive.
func TestQueueStateMoves(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var q *queueState
	q = q.next(jetstream.StreamState{FirstSeq: 10, LastSeq: 20, Msgs: 11}, t0)
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
		q = q.next(s.st, now)
		if moved := q.movedAt.Equal(now); moved != s.moved || !moved && !q.movedAt.Equal(prev) {
			t.Fatalf("step %d: movedAt = %v (was %v), want moved = %v", i, q.movedAt, prev, s.moved)
		}
	}
}
