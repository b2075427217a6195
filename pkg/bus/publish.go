package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/telemetry"
)

// instrumentation names this package in spans and metrics.
const instrumentation = "github.com/demobank/yacredits/pkg/bus"

// HeaderSearchID carries the search a message belongs to, so that a message whose body
// cannot be read can still be dead-lettered against its search.
const HeaderSearchID = "Search-Id"

// errCodeDuplicateInProcess is JetStream's answer (409, JSStreamDuplicateMessageConflict) to
// a publish whose message id a replicated stream is still proposing: the same message, in
// flight.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// PublishTimeout bounds one publish, whatever deadline its caller has: a broker that does
// not answer costs a caller this long, never more.
const PublishTimeout = 2 * time.Second

// Publisher publishes typed messages to JetStream.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a Publisher. A publish that finds no stream fails: the streams are
// the administrator's (package provision), and after a broker restart that lost a memory
// stream, the provisioner puts it back; until then the gateway answers 503 and its sweeper
// sends the pending searches again.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js}
}

// Published is what JetStream said of a stored message.
type Published struct {
	// Seq is the message's sequence in its stream; 0 when a replicated stream was still
	// storing the first copy of the same id.
	Seq uint64
	// Duplicate reports that JetStream already had a message with the id within its
	// window: not an error, the first copy is the one that counts.
	Duplicate bool
}

// Publish sends v as JSON on subject with the de-duplication id msgID and the trace
// context of ctx, and waits for JetStream to store it, at most PublishTimeout.
func (p *Publisher) Publish(ctx context.Context, subject, searchID, msgID string, v any) (Published, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return Published{}, fmt.Errorf("encode %s: %w", subject, err)
	}
	ctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	// The producer span belongs to whatever span ctx carries (the HTTP request, or the
	// consumed message), on that span's pipeline: one trace per search across services.
	ctx, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation).Start(ctx, subject+" publish",
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(subject),
			semconv.MessagingMessageID(msgID),
			attribute.String("search_id", searchID),
		))
	defer span.End()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderSearchID, searchID)
	telemetry.Inject(ctx, msg.Header)
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProcess {
		// A replicated stream is still storing the first copy of this id: a duplicate.
		span.SetAttributes(attribute.Bool("messaging.nats.duplicate", true))
		return Published{Duplicate: true}, nil
	}
	if err != nil {
		err = fmt.Errorf("publish %s %s: %w", subject, msgID, err)
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
		return Published{}, err
	}
	span.SetAttributes(attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	return Published{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
