package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// Handler processes one decoded message. Returning nil acks it; an error wrapping
// ErrPermanent (or contracts.ErrInvalid) dead-letters it; any other error redelivers it
// after the consumer's back-off, until Retry.MaxDeliver, after which it is dead-lettered.
type Handler[T any] func(ctx context.Context, m *T) error

// Middleware wraps a handler with one concern, in the shape of Watermill's middlewares.
type Middleware[T any] func(Handler[T]) Handler[T]

// Recover turns a panic in the handler into a permanent error: one bad message is
// dead-lettered instead of killing the process, and then, redelivered, the next replica.
func Recover[T any]() Middleware[T] {
	return func(next Handler[T]) Handler[T] {
		return func(ctx context.Context, m *T) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = fmt.Errorf("%w: handler panicked: %v (at %s)", ErrPermanent, v, panicSite())
				}
			}()
			return next(ctx, m)
		}
	}
}

// panicSite names the frames that panicked, innermost first: enough to find the bug from
// the dead letter's reason, without a whole stack in it.
func panicSite() string {
	pcs := make([]uintptr, 16)
	n := runtime.Callers(4, pcs) // past Callers, panicSite, the deferred func and gopanic
	frames := runtime.CallersFrames(pcs[:n])
	var sites []string
	for f, more := frames.Next(); more && len(sites) < 4; f, more = frames.Next() {
		if strings.HasPrefix(f.Function, "runtime.") {
			continue
		}
		sites = append(sites, fmt.Sprintf("%s:%d", f.Function, f.Line))
	}
	return strings.Join(sites, " < ")
}

// Timeout bounds one attempt at a message.
func Timeout[T any](d time.Duration) Middleware[T] {
	return func(next Handler[T]) Handler[T] {
		return func(ctx context.Context, m *T) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, m)
		}
	}
}

type msgIDKey struct{}

// MessageID is the de-duplication id (Nats-Msg-Id) of the message a handler is handling,
// from its ctx: what the handler's own publish derives its id from, so that a redelivered
// message yields the same result message and a re-sent one a new one.
func MessageID(ctx context.Context) string {
	id, _ := ctx.Value(msgIDKey{}).(string)
	return id
}

// DeadLetterTimeout bounds the publishing of a dead letter and the finishing of its search.
// It is a deadline of its own: the attempt that failed may have used up its own.
const DeadLetterTimeout = 5 * time.Second

// Consumer runs one durable work consumer with a typed handler, and beside it the consumer
// of the max-deliveries advisories for the same messages, so that a message whose last
// delivery died with its replica is dead-lettered too.
type Consumer[T any] struct {
	Name    string // durable name, shared by the service's replicas
	Subject string // filter subject
	Decode  func([]byte) (*T, error)
	Handle  Handler[T]
	// OnDeadLetter finishes the search of a message that was given up on, so that it does
	// not wait for its deadline. m is nil when the message could not be decoded. Optional.
	OnDeadLetter func(ctx context.Context, searchID string, m *T, reason string) error
	// Retry is the redelivery policy (zero: DefaultRetry).
	Retry Retry
	// Concurrency is how many messages are handled at once (default 64).
	Concurrency int
	Log         zerolog.Logger
	// Tracer makes the consumer spans (nil: none). Handlers find it in their ctx.
	Tracer trace.TracerProvider
	// Meter counts redeliveries and dead letters and reports pending messages (nil: none).
	Meter metric.MeterProvider

	chain                     Handler[T]
	redeliveries, deadLetters metric.Int64Counter
	work, advisories          readiness
}

// readiness is what one consume loop says about itself, for /readyz. Its zero value is
// "not consuming yet".
type readiness struct {
	mu        sync.Mutex
	consuming bool
	err       error // why not
}

func (r *readiness) set(err error) {
	r.mu.Lock()
	r.consuming, r.err = err == nil, err
	r.mu.Unlock()
}

func (r *readiness) get() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.consuming:
		return nil
	case r.err != nil:
		return r.err
	}
	return errStarting
}

var errStarting = errors.New("not consuming yet")

// Ready reports why the consumer is not consuming, or nil: its readiness check.
func (c *Consumer[T]) Ready() error {
	if err := c.work.get(); err != nil {
		return fmt.Errorf("consumer %s: %w", c.Name, err)
	}
	if err := c.advisories.get(); err != nil {
		return fmt.Errorf("consumer %s-max-deliveries: %w", c.Name, err)
	}
	return nil
}

// Run consumes until ctx is cancelled and then drains: messages already pulled are
// handled and acknowledged before it returns. Until its consumers are provisioned as
// WorkConsumer and AdvisoryConsumer describe, and again whenever one disappears (a memory
// stream after a broker restart, until the provisioner puts it back), it binds to them again
// with growing pauses, and Ready says why it is not consuming.
func (c *Consumer[T]) Run(ctx context.Context, js jetstream.JetStream) error {
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Retry.MaxDeliver == 0 {
		c.Retry = DefaultRetry()
	}
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("consumer %s: %w", c.Name, err)
	}
	if c.Tracer == nil {
		c.Tracer = tracenoop.NewTracerProvider()
	}
	if c.Meter == nil {
		c.Meter = metricnoop.NewMeterProvider()
	}
	meter := c.Meter.Meter(instrumentation)
	var err error
	if c.redeliveries, err = meter.Int64Counter("credits.consumer.redeliveries",
		metric.WithDescription("Messages delivered more than once (a replica failed or died with them)")); err != nil {
		return err
	}
	if c.deadLetters, err = meter.Int64Counter("credits.consumer.dead_letters",
		metric.WithDescription("Messages given up on and moved to the dead-letter subject")); err != nil {
		return err
	}
	c.chain = Recover[T]()(Timeout[T](c.Retry.HandlerTimeout)(c.Handle))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.loop(ctx, js, &c.work, c.Name, func(ctx context.Context) (jetstream.Consumer, error) {
			return BindConsumer(ctx, js, contracts.StreamLoan, WorkConsumer(c.Name, c.Subject, c.Retry))
		}, c.handle, c.Concurrency)
	}()
	go func() {
		defer wg.Done()
		c.loop(ctx, js, &c.advisories, c.Name+"-max-deliveries", func(ctx context.Context) (jetstream.Consumer, error) {
			return BindConsumer(ctx, js, contracts.StreamLoanAdvisories, AdvisoryConsumer(c.Name))
		}, c.handleMaxDeliveries, 4)
	}()
	wg.Wait()
	return nil
}

type msgHandler func(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, msg jetstream.Msg)

// loop binds to a consumer and consumes it, again after every interruption, until ctx ends.
func (c *Consumer[T]) loop(ctx context.Context, js jetstream.JetStream, state *readiness, name string,
	bind func(context.Context) (jetstream.Consumer, error), h msgHandler, concurrency int) {
	pause := 100 * time.Millisecond
	var logged string
	for ctx.Err() == nil {
		cons, err := bind(ctx)
		if err == nil {
			state.set(nil)
			pause = 100 * time.Millisecond
			err = c.consume(ctx, js, cons, name, h, concurrency)
			if ctx.Err() != nil {
				return
			}
		}
		state.set(err)
		// Once per distinct problem, not once a second: readiness keeps saying it.
		if err.Error() != logged {
			logged = err.Error()
			c.Log.Warn().Err(err).Str("consumer", name).Dur("retry_in", pause).Msg("consumer not running; binding to it again")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

func (c *Consumer[T]) consume(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, name string, h msgHandler, concurrency int) error {
	pending, err := c.observePending(cons, name)
	if err != nil {
		return err
	}
	defer func() { _ = pending.Unregister() }()
	problems := make(chan error, 1)
	sem := make(chan struct{}, concurrency)
	var inflight sync.WaitGroup
	// Handlers outlive a cancelled ctx: a message already taken is finished, not abandoned.
	work := context.WithoutCancel(ctx)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		sem <- struct{}{} // holding the callback is the back-pressure on pulling
		inflight.Add(1)
		go func() {
			defer func() { <-sem; inflight.Done() }()
			h(work, js, cons, msg)
		}()
	},
		jetstream.PullMaxMessages(concurrency),
		// Short pulls with frequent heartbeats notice a lost consumer in seconds, not the
		// default 30 s: the searches behind it have a 10 s deadline.
		jetstream.PullExpiry(5*time.Second),
		jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			select {
			case problems <- err:
			default:
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", name, err)
	}
	defer func() {
		cc.Drain()
		<-cc.Closed()
		inflight.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-problems:
			if gone(ctx, cons, err) {
				return fmt.Errorf("consumer or stream is gone: %w", err)
			}
			if errors.Is(err, jetstream.ErrConnectionClosed) {
				return err
			}
		}
	}
}

// gone reports whether err means the consumer no longer exists. A pull that finds no
// responder (the stream is gone) or missing heartbeats also happen while the broker is
// briefly away, so they are confirmed with a look-up.
func gone(ctx context.Context, cons jetstream.Consumer, err error) bool {
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return true
	}
	if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, nats.ErrNoResponders) {
		return false
	}
	probe, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = cons.Info(probe)
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// handle runs one work message through the chain (recover, time out, the handler) and turns
// the result into an ack, a delayed redelivery, or a dead letter and a terminate.
func (c *Consumer[T]) handle(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, msg jetstream.Msg) {
	searchID := msg.Headers().Get(HeaderSearchID)
	var delivered, seq uint64 = 1, 0
	if md, err := msg.Metadata(); err == nil {
		delivered, seq = md.NumDelivered, md.Sequence.Stream
	}
	ctx, span := c.Tracer.Tracer(instrumentation).Start(telemetry.Extract(ctx, msg.Headers()), msg.Subject()+" process",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(msg.Subject()),
			semconv.MessagingConsumerGroupName(c.Name),
			attribute.Int64("messaging.nats.stream_sequence", int64(seq)),
			attribute.Int64("messaging.nats.delivered", int64(delivered)),
			attribute.String("search_id", searchID),
		))
	defer span.End()
	ctx, endTask := telemetry.SearchTask(ctx, c.Name, searchID)
	defer endTask()
	consumer := metric.WithAttributes(attribute.String("consumer", c.Name))
	if delivered > 1 {
		c.redeliveries.Add(ctx, 1, consumer)
	}
	log := c.Log.With().Str("consumer", c.Name).Str("search_id", searchID).
		Uint64("stream_seq", seq).Uint64("delivery", delivered).Logger()
	start := time.Now()
	m, err := c.Decode(msg.Data())
	if err == nil {
		err = c.chain(context.WithValue(ctx, msgIDKey{}, msg.Headers().Get(jetstream.MsgIDHeader)), m)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "message failed")
	}
	switch {
	case err == nil:
		if ackErr := msg.Ack(); ackErr != nil {
			// The work is done and idempotent; a lost ack only means one more delivery.
			log.Warn().Ctx(ctx).Err(ackErr).Msg("ack failed")
			return
		}
		log.Debug().Ctx(ctx).Dur("took", time.Since(start)).Msg("message handled")
	case errors.Is(err, ErrPermanent) || errors.Is(err, contracts.ErrInvalid) || delivered >= uint64(c.Retry.MaxDeliver):
		log.Error().Ctx(ctx).Err(err).Msg("message dead-lettered")
		dl := contracts.DeadLetter{SearchID: searchID, Subject: msg.Subject(), Consumer: c.Name, StreamSeq: seq,
			Deliveries: delivered, Reason: err.Error(), Data: msg.Data(), At: time.Now().UTC(),
			MsgID: msg.Headers().Get(jetstream.MsgIDHeader)}
		if dlErr := c.deadLetter(ctx, js, dl, m, deadLetterID(dl, cons)); dlErr != nil {
			log.Error().Ctx(ctx).Err(dlErr).Msg("dead-lettering failed; the message will be delivered again")
			_ = msg.NakWithDelay(c.Retry.delay(delivered))
			return
		}
		_ = msg.TermWithReason("dead-lettered")
	default:
		log.Warn().Ctx(ctx).Err(err).Dur("retry_in", c.Retry.delay(delivered)).Msg("message failed; will be redelivered")
		_ = msg.NakWithDelay(c.Retry.delay(delivered))
	}
}

// handleMaxDeliveries dead-letters a work message that reached its delivery limit without a
// result: the replica holding its last delivery died or could not dead-letter it.
func (c *Consumer[T]) handleMaxDeliveries(ctx context.Context, js jetstream.JetStream, _ jetstream.Consumer, adv jetstream.Msg) {
	var a struct {
		Stream     string `json:"stream"`
		Consumer   string `json:"consumer"`
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if err := json.Unmarshal(adv.Data(), &a); err != nil || a.StreamSeq == 0 {
		_ = adv.Term() // not an advisory we can act on
		return
	}
	ctx, cancel := context.WithTimeout(ctx, DeadLetterTimeout)
	defer cancel()
	stream, err := js.Stream(ctx, contracts.StreamLoan)
	if err != nil {
		_ = adv.NakWithDelay(time.Second)
		return
	}
	raw, err := stream.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		_ = adv.Ack() // dead-lettered and removed already, or the stream started anew
		return
	}
	if err != nil {
		_ = adv.NakWithDelay(time.Second)
		return
	}
	searchID := raw.Header.Get(HeaderSearchID)
	dl := contracts.DeadLetter{SearchID: searchID, Subject: raw.Subject, Consumer: c.Name, StreamSeq: a.StreamSeq,
		Deliveries: a.Deliveries, Reason: "delivery limit reached: no delivery finished or dead-lettered it",
		Data: raw.Data, At: time.Now().UTC(), MsgID: raw.Header.Get(jetstream.MsgIDHeader)}
	m, _ := c.Decode(raw.Data)
	c.Log.Error().Str("consumer", c.Name).Str("search_id", searchID).Uint64("stream_seq", a.StreamSeq).
		Msg("message dead-lettered after its delivery limit")
	if err := c.deadLetter(ctx, js, dl, m, deadLetterID(dl, nil)); err != nil {
		c.Log.Error().Err(err).Str("search_id", searchID).Msg("dead-lettering failed; the advisory will be handled again")
		_ = adv.NakWithDelay(time.Second)
		return
	}
	// A work queue keeps an unacknowledged message until it expires: it is done with now.
	if err := stream.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		c.Log.Warn().Err(err).Uint64("stream_seq", a.StreamSeq).Msg("dead-lettered message not removed; it expires with the stream's max age")
	}
	_ = adv.Ack()
}

// deadLetterID is the dead letter's de-duplication id: the original message's own id where
// it has one, else its stream sequence qualified by when the consumer was created. Memory
// streams number from 1 again after a restart, so a sequence alone would repeat, and a new
// dead letter would be dropped as a duplicate of an old one.
func deadLetterID(dl contracts.DeadLetter, cons jetstream.Consumer) string {
	if dl.MsgID != "" {
		return "dl." + dl.Consumer + "." + dl.MsgID
	}
	epoch := "0"
	if cons != nil {
		epoch = strconv.FormatInt(cons.CachedInfo().Created.UnixNano(), 36)
	}
	return "dl." + dl.Consumer + "." + epoch + "." + strconv.FormatUint(dl.StreamSeq, 10)
}

// deadLetter publishes the dead letter and finishes its search, within its own deadline.
func (c *Consumer[T]) deadLetter(ctx context.Context, js jetstream.JetStream, dl contracts.DeadLetter, m *T, msgID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DeadLetterTimeout)
	defer cancel()
	if _, err := NewPublisher(js).Publish(ctx, contracts.SubjectDeadLetter, dl.SearchID, msgID, dl); err != nil {
		return err
	}
	c.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("consumer", c.Name)))
	if c.OnDeadLetter == nil || dl.SearchID == "" {
		return nil
	}
	if err := c.OnDeadLetter(ctx, dl.SearchID, m, contracts.ReasonDeadLetter); err != nil {
		return fmt.Errorf("finish dead-lettered search %s: %w", dl.SearchID, err)
	}
	return nil
}

// observePending reports the consumer's backlog at each scrape: messages not yet delivered
// and delivered but not yet acknowledged.
func (c *Consumer[T]) observePending(cons jetstream.Consumer, name string) (metric.Registration, error) {
	meter := c.Meter.Meter(instrumentation)
	gauge, err := meter.Int64ObservableGauge("credits.consumer.pending",
		metric.WithDescription("Messages waiting for the consumer (state=waiting) or being handled (state=unacknowledged)"))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		info, err := cons.Info(ctx)
		if err != nil {
			return nil // no figure is better than a failed scrape
		}
		o.ObserveInt64(gauge, int64(info.NumPending), metric.WithAttributes(attribute.String("consumer", name), attribute.String("state", "waiting")))
		o.ObserveInt64(gauge, int64(info.NumAckPending), metric.WithAttributes(attribute.String("consumer", name), attribute.String("state", "unacknowledged")))
		return nil
	}, gauge)
}
