package kvstore

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/demobank/yacredits/pkg/contracts"
)

// finishMetrics measure searches where they end. Finish is the one funnel every ending
// passes through (offers, the deadline, a dead letter), and it runs once per search, so the
// counts are exact however many replicas run.
type finishMetrics struct {
	searches metric.Int64Counter
	overdue  metric.Int64Counter
	latency  metric.Float64Histogram
}

// WithMeter returns a Store that measures every search it finishes: searches by decision
// and product, searches that hit their deadline, and the time from request to done. A nil
// mp measures nothing and returns s.
func (s *Store) WithMeter(mp metric.MeterProvider) (*Store, error) {
	if mp == nil {
		return s, nil
	}
	meter := mp.Meter("github.com/demobank/yacredits/pkg/kvstore")
	var m finishMetrics
	var err error
	if m.searches, err = meter.Int64Counter("credits.searches",
		metric.WithDescription("Searches finished, by decision and product")); err != nil {
		return nil, err
	}
	if m.overdue, err = meter.Int64Counter("credits.searches.deadline_exceeded",
		metric.WithDescription("Searches finished as rejected because no decision came before their deadline")); err != nil {
		return nil, err
	}
	if m.latency, err = meter.Float64Histogram("credits.search.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from the accepted request to the search being done"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	c := *s
	c.metrics = &m
	return &c, nil
}

func (m *finishMetrics) record(ctx context.Context, s *contracts.Search) {
	if m == nil || s.DoneAt == nil {
		return
	}
	attrs := metric.WithAttributes(
		attribute.String("decision", string(s.Decision)),
		attribute.String("product_type", string(s.Request.ProductType)))
	m.searches.Add(ctx, 1, attrs)
	m.latency.Record(ctx, s.DoneAt.Sub(s.Request.RequestedAt).Seconds(), attrs)
	if slices.Contains(s.Reasons, contracts.ReasonDeadline) {
		m.overdue.Add(ctx, 1, metric.WithAttributes(attribute.String("product_type", string(s.Request.ProductType))))
	}
}
