package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// A measurement taken inside a search's trace must not carry the trace's id to /metrics: an
// exemplar would tie a series such as credits.searches{decision} to the trace, and the
// trace to the search, so whoever scrapes would read a client's decision. Asked for
// OpenMetrics, the format that carries exemplars, the page names no trace.
func TestMetricsCarryNoTraceIDs(t *testing.T) {
	mp, handler, err := NewMeterProvider("test")
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Shutdown(context.Background())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "search")
	counter, err := mp.Meter("test").Int64Counter("credits.searches")
	if err != nil {
		t.Fatal(err)
	}
	hist, err := mp.Meter("test").Float64Histogram("credits.search.duration")
	if err != nil {
		t.Fatal(err)
	}
	decision := metric.WithAttributes(attribute.String("decision", "has_approve"))
	counter.Add(ctx, 1, decision)
	hist.Record(ctx, 0.2, decision)
	span.End()

	// Each format a scraper may ask for: OpenMetrics text, and the protobuf format that
	// Prometheus prefers when it collects native histograms.
	for _, accept := range []string{
		"application/openmetrics-text; version=1.0.0",
		"application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
	} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		page := string(body)
		if !strings.Contains(page, "has_approve") {
			t.Fatalf("%s: the page lacks the series measured:\n%q", accept, page)
		}
		if id := span.SpanContext().TraceID().String(); strings.Contains(page, id) || strings.Contains(page, "trace_id") {
			t.Errorf("%s: the page carries the trace's id %s (an exemplar):\n%q", accept, id, grepLines(page, "has_approve"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
