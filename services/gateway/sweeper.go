package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
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
// The deadline is kept with one allowance: a search whose deadline passed while nothing
// could be done for it (the broker was away, this gateway was restarting) is first sent
// again, and finished as rejected only if still pending REPUBLISH_AFTER after a send that
// succeeded. A fault that stopped the whole system then costs the client its answer only
// when the answer really does not come. A search past twice its deadline gets no such
// second chance: nobody waits for it any more.
type sweeper struct {
	store          *search.Store
	pub            *bus.Publisher
	marks          jetstream.KeyValue // the gateway bucket: the checkpoint
	table          *pendingTable
	log            zerolog.Logger
	tracer         trace.Tracer
	now            func() time.Time
	interval       time.Duration
	republishAfter time.Duration
	saved          uint64 // the checkpoint last stored; it only moves forward
}

// sweepWorkers bound how many sweep calls run at once; sweepQueue how many wait.
const (
	sweepWorkers = 16
	sweepQueue   = 256
	// jobTimeout bounds one sweep call, whatever the broker does.
	jobTimeout = 5 * time.Second
)

type jobKind int

const (
	resend jobKind = iota
	finish
)

type job struct {
	kind    jobKind
	key     string
	attempt int
	search  *contracts.Search
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
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, j := range s.table.due(s.now(), s.republishAfter) {
			select {
			case jobs <- j:
			default:
				s.table.release(j.key) // the pool is busy: the next sweep picks it up
			}
		}
		s.saveCheckpoint(ctx)
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
		_, err := s.pub.Publish(ctx, contracts.SubjectRequested, req.SearchID, contracts.RequestMsgID(req, j.attempt), &req)
		s.table.resent(j.key, err == nil, now, s.republishAfter)
		if err != nil {
			span.RecordError(err)
			s.log.Warn().Ctx(ctx).Err(err).Str("search_id", req.SearchID).Msg("pending search not re-sent; will try again")
			return
		}
		s.log.Info().Ctx(ctx).Str("search_id", req.SearchID).Int("attempt", j.attempt).Msg("pending search re-sent")
	case finish:
		_, err := s.store.FinishAtDeadline(ctx, j.key, now)
		if errors.Is(err, contracts.ErrAlreadyDone) || errors.Is(err, search.ErrNotFound) {
			err = nil // somebody else finished it (or it expired): nothing left to do
		}
		s.table.finished(j.key, err == nil, now, s.republishAfter)
		if err != nil {
			span.RecordError(err)
			s.log.Warn().Ctx(ctx).Err(err).Str("search_id", req.SearchID).Msg("overdue search not finished; will try again")
		}
	}
}

// due hands out the work the pending searches need now, marking each busy until its
// worker reports back.
func (t *pendingTable) due(now time.Time, republishAfter time.Duration) []job {
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
		// Past twice its deadline nobody waits for an answer any more: finished at once,
		// not worked on again at the cost of fresh searches.
		forsaken := now.Sub(req.Deadline) > req.Deadline.Sub(req.RequestedAt)
		var j job
		switch {
		case overdue && (forsaken || !e.sentOK.IsZero() && now.Sub(e.sentOK) >= republishAfter):
			j = job{kind: finish}
		case overdue && !e.sentOK.IsZero():
			continue // sent again not long ago: give that send its chance
		case now.Before(e.next):
			continue
		default:
			j = job{kind: resend, attempt: e.attempt + 1}
		}
		j.key, j.search = key, e.search
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
func (t *pendingTable) resent(key string, ok bool, now time.Time, republishAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.entries[key]
	if !found {
		return // done meanwhile
	}
	e.busy = false
	if !ok {
		e.next = now.Add(republishAfter / 4)
		return
	}
	e.attempt++
	e.sentOK, e.next = now, now.Add(e.wait)
	e.wait *= 2
}

// finished records a deadline finish's outcome. A search that is done, by this call or by
// another writer, leaves the table at once: the watch would say so too, but need not be
// waited for.
func (t *pendingTable) finished(key string, ok bool, now time.Time, republishAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.entries[key]
	if !found {
		return
	}
	if ok {
		delete(t.entries, key)
		return
	}
	e.busy = false
	e.next = now.Add(republishAfter / 4)
}

const checkpointKey = "sweeper.checkpoint"

// saveCheckpoint stores the revision a restarted gateway's watch resumes from, if it moved
// forward: it never goes back, so a restart never replays more than is still pending.
func (s *sweeper) saveCheckpoint(ctx context.Context) {
	cp := s.table.checkpoint()
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
