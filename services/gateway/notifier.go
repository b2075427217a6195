package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/search"
)

// notifier follows every write to the searches bucket through one watch, and does nothing
// but tell: it wakes the POSTs waiting for their search, and tells the sweeper which searches
// are pending and which are gone. It does no I/O of its own besides the watch, so that nothing
// it could wait on ever delays an answer (a slow re-send, a stalled write). It decodes a record
// only for a waiting POST or a pending search (search.Entry): most writes a replica sees are
// done searches nobody here waits for.
type notifier struct {
	store   *search.Store
	sweeper sweepSchedule
	log     zerolog.Logger

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	state   error // nil while watching and caught up
	// What the checkpoint needs: the newest revision delivered, and the revision of each
	// search still pending (a restarted watch must read again from the oldest).
	seen    uint64
	pending map[string]uint64
}

// sweepSchedule is what the notifier tells the sweeper: calls that take a lock and return.
type sweepSchedule interface {
	pending(key string, rev uint64, s *contracts.Search)
	gone(key string)
}

// waiter is a POST waiting for a search: every record written under its key after it
// registered is handed to it, the latest one winning.
type waiter struct {
	wake   chan struct{}
	mu     sync.Mutex
	latest *contracts.Search
}

// next returns the latest record written, once wake has fired.
func (w *waiter) next() *contracts.Search {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

var errCatchingUp = errors.New("the watch of the searches bucket is replaying")

// newNotifier resumes from revision resumeFrom (0: the bucket's start); nothing before it is
// pending, since the checkpoint never moves back.
func newNotifier(store *search.Store, sw sweepSchedule, resumeFrom uint64, log zerolog.Logger) *notifier {
	seen := uint64(0)
	if resumeFrom > 0 {
		seen = resumeFrom - 1
	}
	return &notifier{store: store, sweeper: sw, log: log, waiters: map[string]map[*waiter]struct{}{},
		state: errCatchingUp, seen: seen, pending: map[string]uint64{}}
}

// wait registers interest in key. Register before the read or publish that may lead to the
// search's next write, so that no write slips between the two.
func (n *notifier) wait(key string) (*waiter, func()) {
	w := &waiter{wake: make(chan struct{}, 1)}
	n.mu.Lock()
	if n.waiters[key] == nil {
		n.waiters[key] = map[*waiter]struct{}{}
	}
	n.waiters[key][w] = struct{}{}
	n.mu.Unlock()
	return w, func() {
		n.mu.Lock()
		delete(n.waiters[key], w)
		if len(n.waiters[key]) == 0 {
			delete(n.waiters, key)
		}
		n.mu.Unlock()
	}
}

// ready says whether the watch is live and has replayed what it resumed from.
func (n *notifier) ready() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

func (n *notifier) setState(err error) {
	n.mu.Lock()
	n.state = err
	n.mu.Unlock()
}

// checkpoint is the revision from which a restarted watch must read again: the oldest
// search still pending, or the one after the newest seen.
func (n *notifier) checkpoint() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	cp := n.seen + 1
	for _, rev := range n.pending {
		cp = min(cp, rev)
	}
	return cp
}

// forget drops a pending search whose record, at rev, the sweeper found gone with no write
// the watch delivers (a record that expired): only the sweeper's reads can tell. A newer
// pending record of the same id (written again since) stays.
func (n *notifier) forget(key string, rev uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r, ok := n.pending[key]; ok && r <= rev {
		delete(n.pending, key)
	}
}

// position is the newest revision delivered and how many searches are pending.
func (n *notifier) position() (newest uint64, pending int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen, len(n.pending)
}

// run watches the bucket until ctx ends. A broken watch (the broker away longer than the
// client's own recovery) starts again after the newest revision it delivered: what came
// before is in the notifier's state already, pending searches included, so only the writes
// since are read. (From the checkpoint, as a restarted process must, a quorum's return
// would replay every search since the oldest pending one, one message get each, while the
// POSTs wait.) Meanwhile POSTs fall back to pending and the gateway reports not ready.
func (n *notifier) run(ctx context.Context) {
	for ctx.Err() == nil {
		newest, _ := n.position()
		err := n.watch(ctx, newest+1)
		if ctx.Err() != nil {
			return
		}
		n.setState(err)
		n.log.Warn().Err(err).Msg("watch of the searches bucket interrupted; starting it again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (n *notifier) watch(ctx context.Context, from uint64) error {
	// The watchdog ends the watch, with its reason, by cancelling wctx.
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w, err := n.store.Watch(wctx, from)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	n.setState(errCatchingUp)
	go n.watchdog(wctx, cancel)
	for {
		e, caughtUp, err := w.Next(wctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		case caughtUp:
			n.setState(nil)
		default:
			n.observe(e)
		}
	}
}

// watchdogInterval is how often the watch is compared with the bucket. A watch can stall
// without ending: after its server dies, the client notices the lost watch only by missing
// heartbeats, ten seconds or more later, and every POST meanwhile would fall back to
// pending. Comparing the bucket's last revision with the watch's each second, and starting
// the watch again when it has fallen behind and made no progress for a whole interval,
// bounds that to two seconds, at the cost of one small request a second. It runs beside
// the watch, never on its goroutine.
const watchdogInterval = time.Second

// replayTimeout is how long the watch may replay from its checkpoint without progress.
const replayTimeout = 10 * time.Second

func (n *notifier) watchdog(ctx context.Context, stalled context.CancelCauseFunc) {
	tick := time.NewTicker(watchdogInterval)
	defer tick.Stop()
	var last, seen uint64
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, _ := n.position()
		// A watch whose consumer was never set up (its create can go unanswered on a
		// cluster that is just forming) delivers nothing, not even the end of its replay.
		if errors.Is(n.ready(), errCatchingUp) && time.Since(started) > replayTimeout && now == seen {
			stalled(fmt.Errorf("watch of the searches bucket did not replay within %s", replayTimeout))
			return
		}
		if last > seen && now == seen && n.holds(ctx, last) {
			stalled(fmt.Errorf("watch of the searches bucket stalled: revision %d not delivered after %s", last, watchdogInterval))
			return
		}
		seen = now
		last = n.lastRevision(ctx)
	}
}

// lastRevision is the bucket's newest revision, or 0 when it cannot be read now.
func (n *notifier) lastRevision(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, watchdogInterval)
	defer cancel()
	r, err := n.store.Revisions(ctx)
	if err != nil {
		return 0
	}
	return r.Last
}

// holds tells a revision the watch should deliver from one that expired undelivered.
func (n *notifier) holds(ctx context.Context, rev uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, watchdogInterval)
	defer cancel()
	r, err := n.store.Revisions(ctx)
	return err == nil && r.Holds(rev)
}

func (n *notifier) observe(e search.Entry) {
	done, err := e.Done()
	n.mu.Lock()
	waited := len(n.waiters[e.Key]) > 0
	n.mu.Unlock()
	var rec *contracts.Search
	if err == nil && !e.Gone && (waited || !done) {
		rec, err = e.Record()
	}
	if err != nil {
		n.log.Error().Err(err).Str("search_id", e.Key).Uint64("revision", e.Revision).Msg("unreadable search record skipped")
	}
	if rec != nil && !done {
		n.sweeper.pending(e.Key, e.Revision, rec)
	} else {
		n.sweeper.gone(e.Key)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen = max(n.seen, e.Revision)
	if rec != nil && !done {
		n.pending[e.Key] = e.Revision
	} else {
		delete(n.pending, e.Key)
	}
	if rec == nil {
		return
	}
	for w := range n.waiters[e.Key] {
		w.mu.Lock()
		w.latest = rec
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default: // already woken; it reads the latest
		}
	}
}
