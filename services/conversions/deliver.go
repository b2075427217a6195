package conversions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/services/conversions/yandex"
)

// Delivery is how the worker batches and retries.
type Delivery struct {
	Batch     int           // conversions in one send at most
	BatchWait time.Duration // how long a send waits to fill its batch
	// AckWait is how long a conversion in hand stays with its replica: one that dies holding
	// it, even between sending and recording, leaves it to be sent again after this.
	AckWait   time.Duration
	RetryBase time.Duration // the first retry's wait, doubled each time
	RetryMax  time.Duration // the longest wait between two sends
}

// worker delivers queued conversions. It reads every revision of the conversions bucket
// through a durable consumer that all replicas share, and acknowledges a revision only once
// it is recorded as delivered or failed: a conversion is sent at least once, and an item
// sent twice carries the same id both times.
type worker struct {
	store   *Store
	send    *yandex.Client
	cfg     Delivery
	metrics *metrics
	log     zerolog.Logger
	now     func() time.Time
	// afterSend, if set, runs after a send Yandex accepted and before it is recorded: the
	// tests stop a worker there, as a crash would.
	afterSend func()
	// lastDelivered is when this replica last had a send accepted (unix nanoseconds): the
	// evidence that Yandex takes conversions, which a conversion it keeps failing on alone
	// is measured against before it is parked.
	lastDelivered atomic.Int64
	// asides are the conversions this replica set aside, by id: how often, and since when.
	// The delivery goroutine's alone.
	asides map[string]*aside
}

// aside is what a replica knows of a conversion it set aside.
type aside struct {
	count int
	first time.Time
}

// What the worker does about a send Yandex answers with a 5xx again and again (its side
// failing on something in the batch), so that one conversion never holds back the others:
const (
	// splitAfter 5xx answers in a row, each half of a batch of several is sent once: a half
	// Yandex fails on while it takes the other is split again, down to the conversion that
	// fails alone; failing on both halves, it is failing on everything (or on something in
	// each), and the whole batch is set aside.
	splitAfter = 2
	// A conversion that fails alone that often is set aside: handed back to the broker for
	// DELIVERY_RETRY_MAX, so that the rest go on.
	setAsideAfter = 3
	// Set aside parkAfter times by a replica that has had others taken since the first time,
	// a conversion is parked: kept as failed with Yandex's last answer, which the
	// failed-conversions alert and `yactl conversions retry` are for. Never dropped, and never
	// parked while nothing is taken (an outage).
	parkAfter = 4
	// asideMemory is how long a replica remembers a conversion it set aside.
	asideMemory = 24 * time.Hour
)

// bind binds to the delivery consumer, trying again with growing pauses while it is not
// provisioned as planned (a first rollout, where the provisioner has not made it yet): the
// intake goes on recording meanwhile, and readiness says the consumer is missing. Nil once
// ctx ends.
func (w *worker) bind(ctx context.Context, js jetstream.JetStream) jetstream.Consumer {
	want := provision.ConversionsDelivery(provision.Settings{DeliveryAckWait: w.cfg.AckWait})
	var logged string
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
		cons, err := bus.BindConsumer(ctx, js, want.On, want.Consumer)
		if err == nil {
			return cons
		}
		if ctx.Err() != nil {
			return nil
		}
		if err.Error() != logged {
			logged = err.Error()
			w.log.Warn().Err(err).Dur("retry_in", pause).Msg("not delivering yet: binding to the delivery consumer again")
		}
		if sleep(ctx, pause) != nil {
			return nil
		}
	}
}

type pending struct {
	msg  jetstream.Msg
	conv contracts.Conversion
}

func (w *worker) run(ctx context.Context, js jetstream.JetStream) error {
	cons := w.bind(ctx, js)
	if cons == nil {
		return nil
	}
	for ctx.Err() == nil {
		msgs, err := bus.Fetch(ctx, cons, w.cfg.Batch, w.cfg.BatchWait)
		if ctx.Err() != nil { // stopping: another replica takes them at once
			for _, m := range msgs {
				_ = m.Nak()
			}
			return nil
		}
		var todo []pending
		for _, msg := range msgs {
			if p, ok := w.queued(ctx, msg); ok {
				todo = append(todo, p)
			}
		}
		if len(todo) > 0 {
			w.deliverAll(ctx, todo)
		}
		if err != nil {
			w.log.Warn().Err(err).Msg("fetch conversions to deliver")
			if err := sleep(ctx, time.Second); err != nil {
				return nil
			}
		}
	}
	return nil
}

// queued reads one revision off the stream and keeps it if it is a conversion still to
// send and the latest revision of its key; anything else is acknowledged at once.
func (w *worker) queued(ctx context.Context, msg jetstream.Msg) (pending, bool) {
	skip := func() (pending, bool) { _ = msg.Ack(); return pending{}, false }
	if op := msg.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return skip()
	}
	meta, err := msg.Metadata()
	if err != nil {
		return skip()
	}
	c, err := contracts.DecodeConversion(msg.Data())
	if err != nil {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("unreadable conversion record skipped")
		return skip()
	}
	if c.State != contracts.ConversionQueued {
		return skip()
	}
	_, rev, err := w.store.Get(ctx, c.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return skip()
	case err != nil:
		_ = msg.NakWithDelay(time.Second) // the bucket is unreachable now: again later
		return pending{}, false
	case rev > meta.Sequence.Stream:
		return skip() // a later revision is on its way to us
	}
	return pending{msg: msg, conv: *c}, true
}

// deliverAll delivers a fetched batch. From now until each conversion's outcome is
// recorded (or it is handed back), the broker is told every AckWait/3 that all of them are
// still being worked on, during sends and waits alike, so that no other replica is given
// one this replica still holds.
func (w *worker) deliverAll(ctx context.Context, todo []pending) {
	k := newKeeper(todo, max(w.cfg.AckWait/3, 10*time.Millisecond))
	defer k.stop()
	w.deliver(ctx, todo, k, 0)
}

// deliver sends todo until Yandex answers for it, then records the outcome; before counts
// the sends of these conversions so far. A batch that Yandex refuses for good is sent again
// item by item, so that one bad conversion does not take the others to the dead letters
// with it.
func (w *worker) deliver(ctx context.Context, todo []pending, k *keeper, before int) {
	batch := make([]contracts.Conversion, len(todo))
	for i, p := range todo {
		batch[i] = p.conv
	}
	run := 0 // 5xx answers in a row
	for attempt := before + 1; ; attempt++ {
		err := w.send.Send(ctx, batch)
		var retry *yandex.RetryableError
		var refused *yandex.PermanentError
		switch {
		case err == nil:
			w.accepted(ctx, todo, attempt, k)
			return
		case errors.As(err, &refused):
			w.metrics.sent(ctx, "refused", len(todo))
			if len(todo) == 1 {
				w.finish(ctx, todo[0], attempt, refused, k)
				return
			}
			for _, p := range todo {
				if !w.stillQueued(ctx, p, k) {
					continue
				}
				w.deliver(ctx, []pending{p}, k, attempt)
			}
			return
		case ctx.Err() != nil:
			w.release(todo, k) // stopping: another replica sends them now
			return
		default: // a *yandex.RetryableError, or any other failure to hear back
			errors.As(err, &retry)
			w.metrics.sent(ctx, "retry", len(todo))
			// Only Yandex answering 5xx without saying when to come back points at something
			// in the batch; no answer, a 429, a Retry-After or a wrong credential is the same
			// for every conversion, and the batch waits whole.
			failing := retry != nil && retry.Status >= 500 && retry.After == 0
			if run++; !failing {
				run = 0
			}
			if failing && run >= splitAfter && len(todo) > 1 {
				w.log.Warn().Err(err).Int("conversions", len(todo)).Msg("Yandex keeps failing on this batch: each half sent once")
				w.isolate(ctx, todo, k, attempt, retry)
				return
			}
			if failing && run >= setAsideAfter && len(todo) == 1 {
				w.setAside(ctx, todo[0], attempt, retry, k)
				return
			}
			wait := w.backoff(attempt-before, retry)
			w.log.Warn().Err(err).Int("conversions", len(todo)).Int("attempt", attempt).Dur("retry_in", wait).
				Msg("conversions not delivered yet")
			if err := sleep(ctx, wait); err != nil {
				w.release(todo, k)
				return
			}
		}
	}
}

// isolate sends each half of a batch Yandex keeps failing on once. What Yandex takes is
// delivered. A half it fails on while it takes the other holds what it fails on, and is
// delivered the same way (split again, down to one conversion). Failing on both halves,
// Yandex is failing on everything (an outage) or on something in each half: the whole batch
// is set aside rather than sent over and over, and the replica goes on with others.
func (w *worker) isolate(ctx context.Context, todo []pending, k *keeper, attempt int, retry *yandex.RetryableError) {
	mid := len(todo) / 2
	var failed [][]pending
	for _, half := range [][]pending{todo[:mid], todo[mid:]} {
		if !w.sendOnce(ctx, half, k, attempt+1) {
			failed = append(failed, half)
		}
	}
	switch len(failed) {
	case 0:
	case 1:
		w.deliver(ctx, failed[0], k, attempt+1)
	default:
		for _, half := range failed {
			for _, p := range half {
				w.setAside(ctx, p, attempt+1, retry, k)
			}
		}
	}
}

// accepted records a send Yandex accepted: every conversion of it delivered, after attempts
// sends by this replica.
func (w *worker) accepted(ctx context.Context, todo []pending, attempts int, k *keeper) {
	w.lastDelivered.Store(w.now().UnixNano())
	w.metrics.sent(ctx, "delivered", len(todo))
	if w.afterSend != nil {
		w.afterSend()
	}
	for _, p := range todo {
		w.finish(ctx, p, attempts, nil, k)
	}
}

// sendOnce sends a half of a batch once and reports whether it was dealt with: delivered,
// refused for good (then delivered item by item, as deliver does), or handed back on the
// way out. false: Yandex failed on it, and it is still in hand.
func (w *worker) sendOnce(ctx context.Context, todo []pending, k *keeper, attempt int) bool {
	batch := make([]contracts.Conversion, len(todo))
	for i, p := range todo {
		batch[i] = p.conv
	}
	err := w.send.Send(ctx, batch)
	var refused *yandex.PermanentError
	switch {
	case err == nil:
		w.accepted(ctx, todo, attempt, k)
		return true
	case errors.As(err, &refused):
		w.deliver(ctx, todo, k, attempt-1) // sent again, refused again: then item by item
		return true
	case ctx.Err() != nil:
		w.release(todo, k)
		return true
	default:
		w.metrics.sent(ctx, "retry", len(todo))
		return false
	}
}

// setAside hands a conversion Yandex keeps failing on back to the broker for
// DELIVERY_RETRY_MAX, so that the others go on. Set aside parkAfter times by this replica,
// which has had others taken since the first time, it is parked as failed with Yandex's
// answer. A conversion is never dropped: handed back, it is sent again; parked, it waits for
// `yactl conversions retry`.
func (w *worker) setAside(ctx context.Context, p pending, attempts int, retry *yandex.RetryableError, k *keeper) {
	now := w.now()
	if w.asides == nil {
		w.asides = map[string]*aside{}
	}
	for id, a := range w.asides { // forget what another replica has long since dealt with
		if now.Sub(a.first) > asideMemory {
			delete(w.asides, id)
		}
	}
	a := w.asides[p.conv.ID]
	if a == nil {
		a = &aside{first: now}
		w.asides[p.conv.ID] = a
	}
	if a.count++; a.count >= parkAfter && w.lastDelivered.Load() > a.first.UnixNano() {
		delete(w.asides, p.conv.ID)
		w.log.Error().Str("conversion", p.conv.ID).Int("status", retry.Status).Int("set_aside", a.count-1).
			Msg("Yandex keeps failing on this conversion while it takes others: parked as failed")
		w.finish(ctx, p, attempts, &yandex.PermanentError{Status: retry.Status,
			Answer: "failed again and again while others were delivered: " + retry.Err.Error()}, k)
		return
	}
	w.metrics.sent(ctx, "set_aside", 1)
	w.log.Warn().Str("conversion", p.conv.ID).Int("status", retry.Status).Dur("retry_in", w.cfg.RetryMax).
		Msg("Yandex keeps failing on this conversion: set aside, the others go on")
	_ = p.msg.NakWithDelay(w.cfg.RetryMax)
	k.done(p)
}

// stillQueued reads a conversion again before it is sent on its own: an operator may have
// changed it meanwhile. One no longer queued is let go.
func (w *worker) stillQueued(ctx context.Context, p pending, k *keeper) bool {
	c, _, err := w.store.Get(ctx, p.conv.ID)
	switch {
	case err == nil && c.State == contracts.ConversionQueued:
		return true
	case err == nil || errors.Is(err, ErrNotFound):
		_ = p.msg.Ack()
	default:
		_ = p.msg.NakWithDelay(time.Second)
	}
	k.done(p)
	return false
}

// keeper tells the broker, until each is done, that the conversions in hand are still
// being worked on.
type keeper struct {
	mu    sync.Mutex
	held  map[jetstream.Msg]bool
	quit  chan struct{}
	ended chan struct{}
}

func newKeeper(todo []pending, every time.Duration) *keeper {
	k := &keeper{held: map[jetstream.Msg]bool{}, quit: make(chan struct{}), ended: make(chan struct{})}
	for _, p := range todo {
		k.held[p.msg] = true
	}
	go func() {
		defer close(k.ended)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-k.quit:
				return
			case <-t.C:
				k.mu.Lock()
				for m := range k.held {
					_ = m.InProgress()
				}
				k.mu.Unlock()
			}
		}
	}()
	return k
}

func (k *keeper) done(p pending) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.held, p.msg)
}

func (k *keeper) stop() {
	close(k.quit)
	<-k.ended
}

// backoff is the wait before the next send: what the endpoint asked for, or a doubling
// wait with jitter, never over RetryMax (but a Retry-After longer than it is honoured).
func (w *worker) backoff(attempt int, retry *yandex.RetryableError) time.Duration {
	if retry != nil && retry.After > 0 {
		return retry.After
	}
	d := w.cfg.RetryBase << min(attempt-1, 20)
	if d <= 0 || d > w.cfg.RetryMax {
		d = w.cfg.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// release hands conversions back to the consumer for another replica, at once, on the
// way out; a replica that dies instead leaves them until DELIVERY_ACK_WAIT.
func (w *worker) release(todo []pending, k *keeper) {
	for _, p := range todo {
		_ = p.msg.Nak()
		k.done(p)
	}
}

// finish records a conversion as delivered (refused nil) or failed, then acknowledges its
// revision. Were the record not written, the revision stays unacknowledged and the
// conversion is sent again: at least once, never lost.
func (w *worker) finish(ctx context.Context, p pending, attempts int, refused *yandex.PermanentError, k *keeper) {
	defer k.done(p)
	delete(w.asides, p.conv.ID)
	now := w.now().UTC()
	_, err := w.store.Update(ctx, p.conv.ID, func(c *contracts.Conversion) *contracts.Conversion {
		if c.State != contracts.ConversionQueued {
			return nil // an operator, or another replica after a redelivery, came first
		}
		next := *c
		next.Attempts += attempts // this replica's sends; a crashed one's are not known
		if refused == nil {
			next.State, next.DeliveredAt, next.LastError = contracts.ConversionDelivered, &now, ""
		} else {
			next.State, next.FailedAt = contracts.ConversionFailed, &now
			next.LastError = fmt.Sprintf("%d %s", refused.Status, refused.Answer)
		}
		return &next
	})
	if err != nil {
		w.log.Error().Err(err).Str("conversion", p.conv.ID).Msg("outcome not recorded; the conversion will be sent again")
		_ = p.msg.NakWithDelay(time.Second)
		return
	}
	_ = p.msg.Ack()
	if refused != nil {
		w.metrics.failed(ctx)
		w.log.Error().Str("conversion", p.conv.ID).Int("status", refused.Status).Str("answer", refused.Answer).
			Msg("Yandex refused a conversion; it is kept as failed (yactl conversions list -state failed, then retry)")
		return
	}
	w.metrics.delivered(ctx)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
