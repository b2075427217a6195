// Package telemetry holds what every service shares for tracing and logging: the carrier
// that moves W3C trace context through NATS message headers, and the log hook that stamps
// each line with its trace.
package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Propagator is the one propagation format used across the services: W3C trace context
// and baggage, which Jaeger and every OpenTelemetry SDK read.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

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

// InjectMap returns ctx's trace context as a map, for storing with a record.
func InjectMap(ctx context.Context) map[string]string {
	m := propagation.MapCarrier{}
	Propagator.Inject(ctx, m)
	if len(m) == 0 {
		return nil
	}
	return m
}

// ExtractMap returns ctx carrying the trace context stored by InjectMap.
func ExtractMap(ctx context.Context, m map[string]string) context.Context {
	return Propagator.Extract(ctx, propagation.MapCarrier(m))
}
