package search

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/demobank/yacredits/pkg/contracts"
)

// endings measure searches where they end. The funnel (Store.transition) is the one place
// every ending passes through, once per search, so the counts are exact however many
// replicas run, and none of the ways a search ends (offers, the deadline, a dead letter)
// is missing from them.
type endings struct {
	searches metric.Int64Counter
	overdue  metric.Int64Counter
	latency  metric.Float64Histogram
}

func newEndings(mp metric.MeterProvider) (*endings, error) {
	if mp == nil {
		return nil, nil
	}
	meter := mp.Meter(instrumentation)
	var m endings
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
	return &m, nil
}

func (m *endings) record(ctx context.Context, s *contracts.Search) {
	if m == nil || s.DoneAt == nil {
		return
	}
	// test keeps the test phones' searches (TEST_PHONES) apart from the business figures:
	// a dashboard sums test="false".
	test := attribute.Bool("test", s.Request.Test)
	attrs := metric.WithAttributes(
		attribute.String("decision", string(s.Decision())),
		attribute.String("product_type", string(s.Request.ProductType)), test)
	m.searches.Add(ctx, 1, attrs)
	m.latency.Record(ctx, s.DoneAt.Sub(s.Request.RequestedAt).Seconds(), attrs)
	if slices.Contains(s.Reasons, contracts.ReasonDeadline) {
		m.overdue.Add(ctx, 1, metric.WithAttributes(attribute.String("product_type", string(s.Request.ProductType)), test))
	}
}
