// Package telemetry holds what every service shares for tracing and logging: the carrier
// that moves W3C trace context through NATS message headers, and the log hook that stamps
// each line with its trace.
package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Propagator is the one propagation format used across the services: W3C trace context,
// which Jaeger and every OpenTelemetry SDK read. No baggage: nothing of ours sets any, and a
// caller's must not travel to the other services or be stored with a search.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// HeaderCarrier adapts NATS message headers to OpenTelemetry's TextMapCarrier.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces key's values with value.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes ctx's trace context into h.
func Inject(ctx context.Context, h nats.Header) { Propagator.Inject(ctx, HeaderCarrier(h)) }

// Extract returns ctx carrying the trace context found in h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return Propagator.Extract(ctx, HeaderCarrier(h))
}

// Traceparent returns the W3C traceparent of ctx's span, or "" when it has none: the one
// field a record keeps of its request's trace (never the caller's baggage).
func Traceparent(ctx context.Context) string {
	m := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, m)
	return m["traceparent"]
}

// FromTraceparent returns ctx carrying the span context a stored traceparent names, so that
// later work for a search (a re-send, the deadline, a poll's link) joins its trace.
func FromTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
