package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
// after the consumer's back-off, until MaxDeliver, after which it is dead-lettered.
type Handler[T any] func(ctx context.Context, m *T) error

// Consumer runs one durable work consumer with a typed handler.
type Consumer[T any] struct {
	Name    string // durable name, shared by the service's replicas
	Subject string // filter subject
	Decode  func([]byte) (*T, error)
	Handle  Handler[T]
	// OnDeadLetter finishes the search of a message that was given up on, so that it does
	// not wait for its deadline. Optional.
	OnDeadLetter func(ctx context.Context, searchID, reason string) error
	// Concurrency is how many messages are handled at once (default 64).
	Concurrency int
	// Replicas is used when the consumer has to recreate the streams.
	Replicas int
	Log      zerolog.Logger
	// Tracer makes the consumer spans (nil: none). Handlers find it in their ctx.
	Tracer trace.TracerProvider
	// Meter counts redeliveries and dead letters and reports pending messages (nil: none).
	Meter metric.MeterProvider

	redeliveries, deadLetters metric.Int64Counter
}

// Run consumes until ctx is cancelled and then drains: messages already pulled are
// handled and acknowledged before it returns. If the consumer or its stream disappears (a
// memory stream after a broker restart) it declares them again and goes on.
func (c *Consumer[T]) Run(ctx context.Context, js jetstream.JetStream) error {
	if c.Concurrency <= 0 {
		c.Concurrency = 64
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
	for {
		err := c.consume(ctx, js)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrConnectionClosed) {
			return fmt.Errorf("consumer %s: %w", c.Name, err)
		}
		c.Log.Warn().Err(err).Str("consumer", c.Name).Msg("consumer interrupted; declaring it again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// errRestart asks consume's caller to declare the consumer again.
var errRestart = errors.New("consumer or stream is gone")

func (c *Consumer[T]) consume(ctx context.Context, js jetstream.JetStream) error {
	if err := EnsureStreams(ctx, js, c.Replicas); err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, contracts.StreamLoan, WorkConsumer(c.Name, c.Subject))
	if err != nil {
		return fmt.Errorf("declare consumer %s: %w", c.Name, err)
	}
	pending, err := c.observePending(cons)
	if err != nil {
		return err
	}
	defer func() { _ = pending.Unregister() }()
	problems := make(chan error, 1)
	sem := make(chan struct{}, c.Concurrency)
	var inflight sync.WaitGroup
	// Handlers outlive a cancelled ctx: a message already taken is finished, not abandoned.
	work := context.WithoutCancel(ctx)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		sem <- struct{}{} // holding the callback is the back-pressure on pulling
		inflight.Add(1)
		go func() {
			defer func() { <-sem; inflight.Done() }()
			c.handle(work, js, msg)
		}()
	},
		jetstream.PullMaxMessages(c.Concurrency),
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
		return fmt.Errorf("consume %s: %w", c.Name, err)
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
			if c.gone(ctx, cons, err) {
				return fmt.Errorf("%w: %w", errRestart, err)
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
func (c *Consumer[T]) gone(ctx context.Context, cons jetstream.Consumer, err error) bool {
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

func (c *Consumer[T]) handle(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg) {
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
	ctx, cancel := context.WithTimeout(ctx, contracts.HandlerTimeout)
	defer cancel()
	consumer := metric.WithAttributes(attribute.String("consumer", c.Name))
	if delivered > 1 {
		c.redeliveries.Add(ctx, 1, consumer)
	}
	log := c.Log.With().Str("consumer", c.Name).Str("search_id", searchID).
		Uint64("stream_seq", seq).Uint64("delivery", delivered).Logger()
	start := time.Now()

	m, err := c.Decode(msg.Data())
	if err == nil {
		err = c.Handle(ctx, m)
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
		log.Info().Ctx(ctx).Dur("took", time.Since(start)).Msg("message handled")
	case errors.Is(err, ErrPermanent) || errors.Is(err, contracts.ErrInvalid) || delivered >= uint64(contracts.MaxDeliver):
		log.Error().Ctx(ctx).Err(err).Msg("message dead-lettered")
		if dlErr := c.deadLetter(ctx, js, msg, searchID, seq, delivered, err); dlErr != nil {
			log.Error().Ctx(ctx).Err(dlErr).Msg("dead-lettering failed; the message will be delivered again")
			_ = msg.NakWithDelay(backOff(delivered))
			return
		}
		c.deadLetters.Add(ctx, 1, consumer)
		_ = msg.TermWithReason("dead-lettered")
	default:
		log.Warn().Ctx(ctx).Err(err).Dur("retry_in", backOff(delivered)).Msg("message failed; will be redelivered")
		_ = msg.NakWithDelay(backOff(delivered))
	}
}

// observePending reports the consumer's backlog at each scrape: messages not yet delivered
// and delivered but not yet acknowledged.
func (c *Consumer[T]) observePending(cons jetstream.Consumer) (metric.Registration, error) {
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
		o.ObserveInt64(gauge, int64(info.NumPending), metric.WithAttributes(attribute.String("consumer", c.Name), attribute.String("state", "waiting")))
		o.ObserveInt64(gauge, int64(info.NumAckPending), metric.WithAttributes(attribute.String("consumer", c.Name), attribute.String("state", "unacknowledged")))
		return nil
	}, gauge)
}

func backOff(delivered uint64) time.Duration {
	i := int(delivered) - 1
	if i >= len(contracts.BackOff) {
		i = len(contracts.BackOff) - 1
	}
	if i < 0 {
		i = 0
	}
	return contracts.BackOff[i]
}

func (c *Consumer[T]) deadLetter(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, searchID string, seq, delivered uint64, cause error) error {
	dl := contracts.DeadLetter{
		SearchID: searchID, Subject: msg.Subject(), Consumer: c.Name, StreamSeq: seq,
		Deliveries: delivered, Reason: cause.Error(), Data: msg.Data(), At: time.Now().UTC(),
	}
	pub := NewPublisher(js, c.Replicas)
	if err := pub.Publish(ctx, contracts.SubjectDeadLetter, searchID, fmt.Sprintf("%s.%d", c.Name, seq), dl); err != nil {
		return err
	}
	if c.OnDeadLetter == nil || searchID == "" {
		return nil
	}
	if err := c.OnDeadLetter(ctx, searchID, contracts.ReasonDeadLetter); err != nil {
		return fmt.Errorf("finish dead-lettered search %s: %w", searchID, err)
	}
	return nil
}
