package telemetry

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
)

// NewMeterProvider returns a meter provider for the process and the /metrics handler that
// serves what it measures in Prometheus' text format, with the Go runtime's and the
// process's own metrics beside them. One per process: the standalone binary's three
// services share it, each instrument naming what it measures.
func NewMeterProvider(service string) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	// No exemplars: the SDK would keep, beside each series, the trace id of a measurement
	// taken inside a sampled trace and serve it to any scraper asking for protobuf, which
	// ties a series such as credits.searches{decision} to a search's trace, and so to the
	// client's decision. They also cost each measurement a reservoir update.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(Resource(service)),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}
