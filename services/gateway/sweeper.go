package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// sweeper looks after the searches that are still pending (their POSTs answered pending):
// it sends a search's request again when nothing has happened to it for a while (the
// broker may have lost its memory stream, or the message waits in a long back-off), and
// finishes it as rejected at its deadline. Its calls run on a bounded pool of workers, each
// with its own deadline, so that a slow broker delays only the sweep, never an answer and
// never another sweep call.
//
// The deadline is kept, finished at the first sweep past it, with one allowance (spec §5):
// a search that met a fault (a re-send the broker refused, or held past the deadline, or
// none made before its deadline because this gateway was restarting, or any sweep call
// refused less than the allowance before it began) is sent again and finished as rejected
// only once that send has had its chance: the LOAN queue has worked through it (or stopped
// moving while the broker refused nothing, or lost it) and REPUBLISH_AFTER has passed. A
// fault that stopped the whole system then costs the client its answer only when the answer
// really does not come, not because the backlog it left takes a few seconds to drain. A search a minute past its deadline gets
// no such second chance: nobody waits for it any more.
type sweeper struct {
	store      *search.Store
	pub        *bus.Publisher
	marks      jetstream.KeyValue // the gateway bucket: the checkpoint
	checkpoint func() uint64      // the notifier's: the revision a restarted watch resumes from
	// forget tells the notifier a pending search's record, at a revision, is gone without a
	// write the watch would show (it expired): that revision must no longer hold the
	// checkpoint back.
	forget         func(key string, rev uint64)
	table          *pendingTable // the sweeper's own schedule; the notifier tells it what is pending
	log            zerolog.Logger
	tracer         trace.Tracer
	now            func() time.Time
	interval       time.Duration
	republishAfter time.Duration
	saved          uint64 // the checkpoint last stored; it only moves forward
	// loan is the LOAN stream, whose state tells how far the queue has worked (nil: unknown).
	loan  func(ctx context.Context) (*jetstream.StreamInfo, error)
	queue atomic.Pointer[queueState]
}

// queueState is what the sweeper last learned of the LOAN work queue. A work queue drops a
// message when it is acknowledged, so its first sequence and its count of deleted messages
// inside move exactly when the services work: publishing moves neither.
type queueState struct {
	first, last, msgs, deleted uint64
	created                    time.Time // the stream's creation: another one is a stream declared again
	at                         time.Time // when the read was sent: it knows nothing stored after
	movedAt                    time.Time // when it last showed work done (or was empty)
}

// next returns the state of info, read from at, given the one before (nil on the first read).
func (q *queueState) next(info *jetstream.StreamInfo, at time.Time) *queueState {
	st := info.State
	n := &queueState{first: st.FirstSeq, last: st.LastSeq, msgs: st.Msgs, deleted: uint64(st.NumDeleted),
		created: info.Created, at: at, movedAt: at}
	if q != nil && st.Msgs > 0 && st.FirstSeq == q.first && uint64(st.NumDeleted) == q.deleted && info.Created.Equal(q.created) {
		n.movedAt = q.movedAt
	}
	return n
}

// progress is what became of a re-sent search's message, as far as the queue tells.
type progress int

const (
	queued progress = iota // still being worked on, or unknown: wait
	worked                 // worked through, or the queue stopped moving: finish if still pending
	lost                   // the queue no longer holds it (declared again since): send again
)

// stuckAfter is how long a queue with work in it may show no progress, after the broker last
// refused a sweep call, before the sweeper takes it for stuck: longer than the work
// consumers' back-off after a second failed attempt (bus.DefaultRetry, the policy they are
// provisioned with), since a message a service put back while the fault was on (the searches
// bucket still unavailable after the cluster lost quorum) is not redelivered before it, and a
// re-send's interval more for the work it then does.
func stuckAfter(republishAfter time.Duration) time.Duration {
	backOff := bus.DefaultRetry().BackOff
	return backOff[min(1, len(backOff)-1)] + republishAfter
}

// progress judges e's last re-send against the queue q, read within the last staleAfter;
// it records in e which stream it judged against and when the re-sent request left the queue.
// The queue counts as stuck once neither it has moved nor the broker refused a sweep call
// (refused: the last refusal of any) for stuck: a refusal says the fault is still on, and
// the services' back-off after it has yet to run out.
func (e *pendingEntry) progress(q *queueState, now time.Time, staleAfter, stuck time.Duration, refused time.Time) progress {
	if q == nil || now.Sub(q.at) > staleAfter {
		return queued // the broker does not say: the fault that hides it is the one to outwait
	}
	if q.at.Before(e.acked) {
		return queued // read before the re-send was stored: it cannot tell
	}
	if e.created.IsZero() {
		e.created = q.created
	}
	if !q.created.Equal(e.created) || e.seq > q.last || e.drainedBy > q.last {
		return lost // the stream was declared again since: the message went with the old one
	}
	if now.Sub(q.movedAt) >= stuck && now.Sub(refused) >= stuck {
		return worked // stuck: nothing is being worked on, waiting longer gains nothing
	}
	if e.drainedBy == 0 {
		if q.msgs > 0 && q.first <= e.seq {
			return queued
		}
		e.drainedBy = max(q.last, e.seq)
	}
	if q.msgs > 0 && q.first <= e.drainedBy {
		return queued
	}
	return worked
}

// pendingTable is the sweeper's schedule: the searches still pending and the sweeper's plans
// for each. The notifier only tells it which searches are pending and which are gone
// (pending, gone: calls that take the lock and return); everything else in it (each search's
// re-sends, its progress through the queue, whether a worker has it) is the sweeper's, which
// reads and writes it.
type pendingTable struct {
	mu      sync.Mutex
	entries map[string]*pendingEntry
	// refused is when the broker last refused a sweep call, any search's (a re-send or a
	// deadline finish): a fault was still on then. Every pending search's calls feed it, so
	// it follows the fault's end within a sweep or two, where one search's own calls, spaced
	// by its waits, would not.
	refused time.Time
}

type pendingEntry struct {
	rev     uint64
	search  *contracts.Search
	attempt int           // re-sends made by this gateway
	next    time.Time     // when to re-send next
	wait    time.Duration // the wait after that
	sentOK  time.Time     // the last successful re-send by this gateway
	acked   time.Time     // when it was stored: a queue read sent before knows nothing of it
	seq     uint64        // that re-send's sequence in the LOAN stream
	created time.Time     // the LOAN stream it was judged against (its creation time)
	// troubled: the search met a fault (a re-send refused or held past its deadline, or none
	// before its deadline), so its deadline may wait for its last re-send to be worked through.
	troubled bool
	// drainedBy is the stream's last sequence when the re-sent request was seen taken off
	// the queue (0: not seen yet). The scored message it led to was published before that,
	// so once the queue is past drainedBy too, the search has been worked on to the end.
	drainedBy uint64
	busy      bool // a worker has it
}

func newPendingTable() *pendingTable {
	return &pendingTable{entries: map[string]*pendingEntry{}}
}

// pending is the notifier's news that key's record, at rev, is of a pending search.
func (t *pendingTable) pending(key string, rev uint64, s *contracts.Search) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.entries[key]; ok {
		e.rev, e.search = rev, s
		return
	}
	t.entries[key] = &pendingEntry{rev: rev, search: s}
}

// gone is the notifier's news that key is no longer pending: done, deleted or unreadable.
func (t *pendingTable) gone(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}

// sweepWorkers bound how many sweep calls run at once; sweepQueue how many wait.
const (
	sweepWorkers = 16
	sweepQueue   = 256
	// jobTimeout bounds one sweep call, whatever the broker does.
	jobTimeout = 5 * time.Second
)

// forsakenAfter is how long past its deadline a search still gets its second chance: the
// contract's allowance (spec §5), which the record's own rule enforces too
// (contracts.Search.FinishOffered). It is longer than an outage the fault suite inflicts (two
// NATS servers down for 15 s, then the cluster's recovery), shorter than a restart after which
// nobody is waiting any more.
const forsakenAfter = contracts.Allowance

type jobKind int

const (
	resend jobKind = iota
	finish
)

type job struct {
	kind    jobKind
	key     string
	rev     uint64 // the revision of the record the job was planned from
	attempt int
	search  *contracts.Search
	planned time.Time // when the sweep handed it out
}

// run sweeps every interval until ctx ends, then lets the calls in hand finish.
func (s *sweeper) run(ctx context.Context) {
	jobs := make(chan job, sweepQueue)
	var wg sync.WaitGroup
	for range sweepWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s.work(context.WithoutCancel(ctx), j)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	if s.loan != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.followQueue(ctx) }()
	}
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, j := range s.table.due(s.now(), s.republishAfter, s.queue.Load()) {
			select {
			case jobs <- j:
			default:
				s.table.release(j.key) // the pool is busy: the next sweep picks it up
			}
		}
		s.saveCheckpoint(ctx)
	}
}

// followQueue reads the LOAN stream's state every interval, on its own goroutine so that a
// broker slow to answer delays no sweep; a read that fails leaves the last state to age.
func (s *sweeper) followQueue(ctx context.Context) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var warned time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, jobTimeout)
		at := s.now()
		info, err := s.loan(rctx)
		cancel()
		switch {
		case err == nil:
			s.queue.Store(s.queue.Load().next(info, at))
		case ctx.Err() == nil && time.Since(warned) > time.Minute:
			// Unread, overdue searches that had a fault wait up to a minute past their deadline.
			warned = time.Now()
			s.log.Warn().Err(err).Msg("LOAN queue not read: overdue searches that met a fault wait for it")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sweeper) work(ctx context.Context, j job) {
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	req := j.search.Request
	name := "search resend"
	if j.kind == finish {
		name = "search deadline"
	}
	ctx, span := s.tracer.Start(telemetry.FromTraceparent(ctx, j.search.Trace), name, trace.WithAttributes(
		attribute.String("search_id", req.SearchID),
		attribute.String("search.product_type", string(req.ProductType))))
	defer span.End()
	now := s.now()
	switch j.kind {
	case resend:
		sent, err := s.pub.Publish(ctx, contracts.SubjectRequested, req.SearchID, contracts.RequestMsgID(req, j.attempt), &req)
		s.table.resent(j.key, err == nil, sent.Seq, j.planned, s.now(), s.republishAfter)
		if err != nil {
			span.RecordError(err)
			s.log.Warn().Ctx(ctx).Err(err).Str("search_id", req.SearchID).Msg("pending search not re-sent; will try again")
			return
		}
		s.log.Info().Ctx(ctx).Str("search_id", req.SearchID).Int("attempt", j.attempt).Msg("pending search re-sent")
	case finish:
		_, err := s.store.FinishAtDeadline(ctx, j.key, now)
		if errors.Is(err, search.ErrNotFound) {
			s.forget(j.key, j.rev)
		}
		if errors.Is(err, contracts.ErrAlreadyDone) || errors.Is(err, search.ErrNotFound) {
			err = nil // somebody else finished it (or it expired): nothing left to do
		}
		s.table.finished(j.key, j.rev, err == nil, s.now(), s.republishAfter)
		if err != nil {
			span.RecordError(err)
			s.log.Warn().Ctx(ctx).Err(err).Str("search_id", req.SearchID).Msg("overdue search not finished; will try again")
		}
	}
}

// due hands out the work the pending searches need now, given what is known of the LOAN
// queue (nil: nothing), marking each busy until its worker reports back.
func (t *pendingTable) due(now time.Time, republishAfter time.Duration, q *queueState) []job {
	t.mu.Lock()
	defer t.mu.Unlock()
	var jobs []job
	for key, e := range t.entries {
		if e.busy {
			continue
		}
		req := e.search.Request
		if e.next.IsZero() {
			e.next, e.wait = req.RequestedAt.Add(republishAfter), republishAfter
		}
		overdue := now.After(req.Deadline)
		// A minute past its deadline nobody waits for an answer any more: finished at once,
		// not worked on again at the cost of fresh searches.
		forsaken := now.Sub(req.Deadline) > forsakenAfter
		if overdue && !e.troubled && t.refused.After(req.RequestedAt.Add(-forsakenAfter)) {
			// In a fault's shadow: the broker refused a sweep call less than the allowance
			// before this search began, or since. The backlog a fault leaves (searches it held,
			// messages the services put back) is what holds a search begun just after it, so
			// that search met the fault too (the chaos suite's quorum loss: pre-approved
			// clients requested just after the cluster came back, rejected at their deadline).
			e.troubled = true
		}
		var j job
		switch {
		case overdue && forsaken:
			j = job{kind: finish}
		case overdue && !e.sentOK.IsZero() && !e.troubled:
			// Nothing stood in this search's way: its deadline is kept (spec §5), however
			// recent its last re-send.
			j = job{kind: finish}
		case overdue && !e.sentOK.IsZero():
			switch e.progress(q, now, republishAfter, stuckAfter(republishAfter), t.refused) {
			case queued:
				continue // sent again after a fault: give that send its chance
			case lost:
				e.sentOK, e.seq, e.drainedBy, e.created = time.Time{}, 0, 0, time.Time{}
				j = job{kind: resend, attempt: e.attempt + 1}
			case worked:
				if now.Sub(e.sentOK) < republishAfter {
					continue
				}
				j = job{kind: finish}
			}
		case overdue:
			// Overdue and never re-sent by this gateway (restarted, or its watch late): a
			// fault kept it from its chance, so it gets one now.
			e.troubled = true
			if now.Before(e.next) {
				continue
			}
			j = job{kind: resend, attempt: e.attempt + 1}
		case now.Before(e.next):
			continue
		default:
			j = job{kind: resend, attempt: e.attempt + 1}
		}
		j.key, j.rev, j.search, j.planned = key, e.rev, e.search, now
		e.busy = true
		jobs = append(jobs, j)
	}
	return jobs
}

func (t *pendingTable) release(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.entries[key]; ok {
		e.busy = false
	}
}

// resent records a re-send's outcome: after a success the next waits twice as long; after
// a failure the search is tried again soon, so that it goes out as soon as the broker
// takes it.
func (t *pendingTable) resent(key string, ok bool, seq uint64, planned, now time.Time, republishAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		t.refused = now // a fault is still on
	}
	e, found := t.entries[key]
	if !found {
		return // done meanwhile
	}
	e.busy = false
	if !ok {
		e.troubled = true // the broker refused it: its deadline may pass for want of a broker
		e.next = now.Add(republishAfter / 4)
		return
	}
	e.attempt++
	if now.After(e.search.Request.Deadline) && now.Sub(planned) > republishAfter/4 {
		// Planned before the deadline (an untroubled overdue search is never re-sent) and
		// stored after it, held for longer than a publish takes (by a cluster just back from
		// below quorum, or a pool of workers busy with calls the broker does not answer): a
		// fault of ours held the search past its deadline, so the deadline waits for this
		// re-send to be worked through (spec §5's allowance).
		e.troubled = true
	}
	e.sentOK, e.acked, e.seq, e.drainedBy, e.created, e.next = now, now, seq, 0, time.Time{}, now.Add(e.wait)
	e.wait *= 2
}

// finished records a deadline finish's outcome. A search that is done, by this call or by
// another writer, leaves the table at once: the watch would say so too, but need not be
// waited for.
func (t *pendingTable) finished(key string, rev uint64, ok bool, now time.Time, republishAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		t.refused = now // the broker refused the finish: a fault is still on
	}
	e, found := t.entries[key]
	if !found {
		return
	}
	e.busy = false
	switch {
	case ok && e.rev <= rev:
		delete(t.entries, key)
	case ok:
		// A newer pending record of the id (written again meanwhile) is a search of its own.
	default:
		e.next = now.Add(republishAfter / 4)
	}
}

const checkpointKey = "sweeper.checkpoint"

// saveCheckpoint stores the revision a restarted gateway's watch resumes from, if it moved
// forward: it never goes back, so a restart never replays more than is still pending.
func (s *sweeper) saveCheckpoint(ctx context.Context) {
	cp := s.checkpoint()
	if cp <= s.saved {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], cp)
	if _, err := s.marks.Put(ctx, checkpointKey, b[:]); err != nil {
		s.log.Warn().Err(err).Msg("sweeper checkpoint not saved; a restart will re-read a little more")
		return
	}
	s.saved = cp
}

// loadCheckpoint reads the stored checkpoint; 0 means none (read the bucket from its start).
func loadCheckpoint(ctx context.Context, marks jetstream.KeyValue) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, jobTimeout)
	defer cancel()
	e, err := marks.Get(ctx, checkpointKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load sweeper checkpoint: %w", err)
	}
	if len(e.Value()) != 8 {
		return 0, nil // unreadable: replay everything rather than skip something
	}
	return binary.BigEndian.Uint64(e.Value()), nil
}
