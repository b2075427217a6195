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
	"github.com/demobank/yacredits/pkg/kvstore"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// tracker follows every write to the searches bucket through one watch. It serves two
// purposes from that one stream of changes:
//
//   - waiters: a POST that answers synchronously waits here for its search to be done,
//     without polling the bucket;
//   - the sweeper: it remembers which searches are still pending, sends a search's request
//     again when nothing has happened to it for a while (the gateway may have died between
//     storing and publishing, or the broker may have lost its memory stream), and finishes
//     a search as rejected at its deadline.
//
// The watch resumes from a checkpoint, the revision of the oldest search still pending (or
// the next revision when none is), kept in the gateway bucket. So a restarted gateway
// re-reads only the recent past, yet can never skip a search that was still pending.
type tracker struct {
	store          *kvstore.Store
	pub            *bus.Publisher
	marks          jetstream.KeyValue // the gateway bucket
	log            zerolog.Logger
	tracer         trace.Tracer
	now            func() time.Time
	sweepInterval  time.Duration
	republishAfter time.Duration

	mu      sync.Mutex
	waiters map[string]map[chan *contracts.Search]struct{}
	pending map[string]*pendingSearch
	seen    uint64 // the last revision read
}

type pendingSearch struct {
	rev       uint64
	req       contracts.LoanRequested
	trace     map[string]string // the search's trace, which re-sends join
	republish time.Time         // when to send the request again
	wait      time.Duration     // and the wait after that, doubling
}

const checkpointKey = "sweeper.checkpoint"

// wait registers interest in key's next done state. Register before the write that could
// finish it, so that no update slips between the write and the registration.
func (t *tracker) wait(key string) (<-chan *contracts.Search, func()) {
	ch := make(chan *contracts.Search, 1)
	t.mu.Lock()
	if t.waiters[key] == nil {
		t.waiters[key] = map[chan *contracts.Search]struct{}{}
	}
	t.waiters[key][ch] = struct{}{}
	t.mu.Unlock()
	return ch, func() {
		t.mu.Lock()
		delete(t.waiters[key], ch)
		if len(t.waiters[key]) == 0 {
			delete(t.waiters, key)
		}
		t.mu.Unlock()
	}
}

// run watches the bucket and sweeps until ctx ends. A broken watch (the broker away longer
// than the client's own recovery) is started again from the checkpoint: the gateway keeps
// serving meanwhile, and sync answers fall back to pending.
func (t *tracker) run(ctx context.Context) error {
	for {
		err := t.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		t.log.Warn().Err(err).Msg("watch of the searches bucket interrupted; starting it again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (t *tracker) watch(ctx context.Context) error {
	from, err := t.loadCheckpoint(ctx)
	if err != nil {
		return err
	}
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	w, err := t.store.KeyValue().WatchAll(ctx, opts...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
	}
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(t.sweepInterval)
	defer tick.Stop()
	saved := from
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch of the searches bucket ended")
			}
			if e != nil { // nil marks the end of the replay
				t.observe(e)
			}
		case <-tick.C:
			t.sweep(ctx)
			if cp := t.checkpoint(); cp != saved {
				if err := t.saveCheckpoint(ctx, cp); err != nil {
					t.log.Warn().Err(err).Msg("sweeper checkpoint not saved; a restart will re-read a little more")
				} else {
					saved = cp
				}
			}
		}
	}
}

func (t *tracker) observe(e jetstream.KeyValueEntry) {
	key := e.Key()
	var done *contracts.Search
	t.mu.Lock()
	t.seen = max(t.seen, e.Revision())
	if e.Operation() != jetstream.KeyValuePut {
		delete(t.pending, key)
		t.mu.Unlock()
		return
	}
	s, err := contracts.DecodeSearch(e.Value())
	switch {
	case err != nil:
		delete(t.pending, key)
		t.log.Error().Err(err).Str("search_id", key).Msg("unreadable search record skipped by the sweeper")
	case s.Status == contracts.Done:
		delete(t.pending, key)
		done = s
	default:
		t.pending[key] = &pendingSearch{
			rev: e.Revision(), req: s.Request, trace: s.Trace,
			republish: s.Request.RequestedAt.Add(t.republishAfter), wait: t.republishAfter,
		}
	}
	if done != nil {
		for ch := range t.waiters[key] {
			ch <- done // buffered and written once: a done search never changes again
		}
		delete(t.waiters, key)
	}
	t.mu.Unlock()
}

// sweep republishes stalled searches and finishes overdue ones.
func (t *tracker) sweep(ctx context.Context) {
	now := t.now()
	var overdue, stalled []pendingSearch
	t.mu.Lock()
	for _, p := range t.pending {
		switch {
		case now.After(p.req.Deadline):
			overdue = append(overdue, *p)
		case !now.Before(p.republish):
			stalled = append(stalled, *p)
			p.wait *= 2
			p.republish = now.Add(p.wait)
		}
	}
	t.mu.Unlock()
	for _, p := range overdue {
		ctx, span := t.join(ctx, "search deadline", p)
		if _, err := finishOverdue(ctx, t.store, p.req.SearchID, now, t.log); err != nil {
			span.RecordError(err)
			t.log.Error().Ctx(ctx).Err(err).Str("search_id", p.req.SearchID).Msg("overdue search not finished; will try again")
		}
		span.End()
	}
	for _, p := range stalled {
		ctx, span := t.join(ctx, "search resend", p)
		// De-duplication by Nats-Msg-Id makes this a no-op if the first copy is still known.
		if err := publishRequested(ctx, t.pub, &p.req); err != nil {
			span.RecordError(err)
			t.log.Warn().Ctx(ctx).Err(err).Str("search_id", p.req.SearchID).Msg("stalled search not re-sent; will try again")
		} else {
			t.log.Info().Ctx(ctx).Str("search_id", p.req.SearchID).Msg("stalled search re-sent")
		}
		span.End()
	}
}

// join starts a span of the sweeper's in the search's own trace.
func (t *tracker) join(ctx context.Context, name string, p pendingSearch) (context.Context, trace.Span) {
	return t.tracer.Start(telemetry.ExtractMap(ctx, p.trace), name, trace.WithAttributes(
		attribute.String("search_id", p.req.SearchID),
		attribute.String("search.product_type", string(p.req.ProductType))))
}

// checkpoint is the revision from which a restarted watch must read again.
func (t *tracker) checkpoint() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := t.seen + 1
	for _, p := range t.pending {
		cp = min(cp, p.rev)
	}
	return cp
}

func (t *tracker) loadCheckpoint(ctx context.Context) (uint64, error) {
	e, err := t.marks.Get(ctx, checkpointKey)
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

func (t *tracker) saveCheckpoint(ctx context.Context, cp uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], cp)
	_, err := t.marks.Put(ctx, checkpointKey, b[:])
	return err
}

// finishOverdue finishes a search that is past its deadline as rejected, once. If another
// writer finished it first, that result stands and is returned.
func finishOverdue(ctx context.Context, store *kvstore.Store, key string, now time.Time, log zerolog.Logger) (*contracts.Search, error) {
	s, err := store.Update(ctx, key, func(cur *contracts.Search) (*contracts.Search, error) {
		if !cur.Overdue(now) {
			return nil, errNotOverdue
		}
		return cur.Finish(nil, []string{contracts.ReasonDeadline}, now)
	})
	if errors.Is(err, errNotOverdue) || errors.Is(err, contracts.ErrAlreadyDone) {
		s, _, err = store.Get(ctx, key)
		return s, err
	}
	if err != nil {
		return nil, err
	}
	log.Warn().Ctx(ctx).Str("search_id", key).Str("product_type", string(s.Request.ProductType)).
		Str("phone", s.Request.PhoneMasked).Str("reason", contracts.ReasonDeadline).
		Msg("search finished as rejected: no decision before its deadline")
	return s, nil
}

var errNotOverdue = errors.New("search is not overdue")

func publishRequested(ctx context.Context, pub *bus.Publisher, req *contracts.LoanRequested) error {
	return pub.Publish(ctx, contracts.SubjectRequested, req.SearchID,
		contracts.MsgID(req.SearchID, contracts.StageRequested), req)
}
