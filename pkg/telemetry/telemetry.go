package telemetry

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/config"
)

// Telemetry is what one service's main sets up and hands to Run: where spans and
// measurements go, and the /metrics handler that serves the latter.
type Telemetry struct {
	Tracer   trace.TracerProvider
	Meter    metric.MeterProvider
	Metrics  http.Handler
	profiles *Profiles
	shutdown func(context.Context) error
}

// Start sets up tracing (from the OTEL_* variables) and metrics for service, and serves Go's
// profiles on PPROF_ADDR if it is set (loopback only).
func Start(ctx context.Context, getenv config.Getenv, service string) (*Telemetry, error) {
	r := config.NewReader(getenv)
	addr := ReadProfileAddr(r)
	if err := r.Err(); err != nil {
		return nil, err
	}
	tp, shutdown, err := NewTracerProvider(ctx, getenv, service)
	if err != nil {
		return nil, err
	}
	mp, handler, err := NewMeterProvider(service)
	if err != nil {
		return nil, err
	}
	profiles, err := ServeProfiles(addr)
	if err != nil {
		return nil, errors.Join(err, shutdown(ctx))
	}
	return &Telemetry{Tracer: tp, Meter: mp, Metrics: handler, profiles: profiles, shutdown: shutdown}, nil
}

// Shutdown sends the spans still buffered. Call it last, after the service has stopped, so
// that the final requests' spans are sent too; it allows itself five seconds even if ctx
// is already cancelled.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return errors.Join(t.profiles.Close(), t.shutdown(ctx))
}
