package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
)

// notifier follows every write to the searches bucket through one watch, and does nothing
// but tell: it wakes the POSTs waiting for their search, and keeps the table of pending
// searches that the sweeper works from. It does no I/O of its own besides the watch, so
// that nothing it could wait on ever delays an answer (a slow re-send, a stalled write).
type notifier struct {
	kv      jetstream.KeyValue
	pending *pendingTable
	log     zerolog.Logger

	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
	state   error // nil while watching and caught up
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

func newNotifier(pending *pendingTable, log zerolog.Logger) *notifier {
	return &notifier{pending: pending, log: log, waiters: map[string]map[*waiter]struct{}{}, state: errCatchingUp}
}

// wait registers interest in key. Register before the publish that starts the search, so
// that no write slips between the two.
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

// run watches the bucket until ctx ends, resuming from the sweeper's checkpoint. A broken
// watch (the broker away longer than the client's own recovery) starts again from where
// the pending table says nothing can have been missed; meanwhile POSTs fall back to
// pending and the gateway reports not ready.
func (n *notifier) run(ctx context.Context, kv jetstream.KeyValue, from uint64) {
	n.kv = kv
	for ctx.Err() == nil {
		err := n.watch(ctx, from)
		if ctx.Err() != nil {
			return
		}
		n.setState(err)
		n.log.Warn().Err(err).Msg("watch of the searches bucket interrupted; starting it again")
		from = n.pending.checkpoint()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (n *notifier) watch(ctx context.Context, from uint64) error {
	var opts []jetstream.WatchOpt
	if from > 1 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := n.kv.WatchAll(wctx, opts...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
	}
	defer func() { _ = w.Stop() }()
	n.setState(errCatchingUp)
	stalled := make(chan error, 1)
	go n.watchdog(wctx, stalled)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-stalled:
			return err
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch of the searches bucket ended")
			}
			if e == nil { // the end of the replay
				n.setState(nil)
				continue
			}
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

func (n *notifier) watchdog(ctx context.Context, stalled chan<- error) {
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
		// A watch whose consumer was never set up (its create can go unanswered on a
		// cluster that is just forming) delivers nothing, not even the end of its replay.
		if errors.Is(n.ready(), errCatchingUp) && time.Since(started) > replayTimeout && n.pending.newest() == seen {
			stalled <- fmt.Errorf("watch of the searches bucket did not replay within %s", replayTimeout)
			return
		}
		now := n.pending.newest()
		if last > seen && now == seen && n.exists(ctx, last) {
			stalled <- fmt.Errorf("watch of the searches bucket stalled: revision %d not delivered after %s", last, watchdogInterval)
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
	st, err := n.kv.Status(ctx)
	if err != nil {
		return 0
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		return bs.StreamInfo().State.LastSeq
	}
	return 0
}

// exists tells a revision the watch should deliver from one that expired undelivered.
func (n *notifier) exists(ctx context.Context, rev uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, watchdogInterval)
	defer cancel()
	st, err := n.kv.Status(ctx)
	if err != nil {
		return false
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	return ok && bs.StreamInfo().State.Msgs > 0 && bs.StreamInfo().State.LastSeq >= rev && bs.StreamInfo().State.FirstSeq <= rev
}

func (n *notifier) observe(e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		n.pending.remove(key, e.Revision())
		return
	}
	s, err := contracts.DecodeSearch(key, e.Value())
	if err != nil {
		n.pending.remove(key, e.Revision())
		n.log.Error().Err(err).Str("search_id", key).Uint64("revision", e.Revision()).Msg("unreadable search record skipped")
		return
	}
	if s.DoneAt == nil {
		n.pending.put(key, e.Revision(), s)
	} else {
		n.pending.remove(key, e.Revision())
	}
	n.mu.Lock()
	for w := range n.waiters[key] {
		w.mu.Lock()
		w.latest = s
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default: // already woken; it reads the latest
		}
	}
	n.mu.Unlock()
}

// pendingTable is what the gateway knows of the searches still pending, from the watch, and
// the sweeper's plans for each. The notifier writes it; the sweeper reads it and hands the
// work out. It also yields the checkpoint the watch resumes from after a restart.
type pendingTable struct {
	mu      sync.Mutex
	entries map[string]*pendingEntry
	seen    uint64 // the newest revision the watch delivered
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
	// troubled: the search met a fault (a re-send refused, or none before its deadline), so
	// its deadline may wait for its last re-send to be worked through.
	troubled bool
	// drainedBy is the stream's last sequence when the re-sent request was seen taken off
	// the queue (0: not seen yet). The scored message it led to was published before that,
	// so once the queue is past drainedBy too, the search has been worked on to the end.
	drainedBy uint64
	busy      bool // a worker has it
}

func newPendingTable(resumeFrom uint64) *pendingTable {
	seen := uint64(0)
	if resumeFrom > 0 {
		seen = resumeFrom - 1 // nothing before the checkpoint is pending: it never moves back
	}
	return &pendingTable{entries: map[string]*pendingEntry{}, seen: seen}
}

func (t *pendingTable) put(key string, rev uint64, s *contracts.Search) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen = max(t.seen, rev)
	if e, ok := t.entries[key]; ok {
		e.rev, e.search = rev, s
		return
	}
	t.entries[key] = &pendingEntry{rev: rev, search: s}
}

func (t *pendingTable) remove(key string, rev uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen = max(t.seen, rev)
	delete(t.entries, key)
}

// checkpoint is the revision from which a restarted watch must read again: the oldest
// search still pending, or the one after the newest seen.
func (t *pendingTable) checkpoint() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := t.seen + 1
	for _, e := range t.entries {
		cp = min(cp, e.rev)
	}
	return cp
}

// newest is the newest revision the watch delivered.
func (t *pendingTable) newest() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

func (t *pendingTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
