package telemetry

import (
	"context"
	"fmt"
	"runtime/debug"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/demobank/yacredits/pkg/config"
)

// Version is the build's version: set with -ldflags "-X …/telemetry.Version=v1.2.3", else
// the main module's version from the build info, else "dev".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// TracingEnabled reports whether the standard OpenTelemetry variables ask for traces to be
// exported: an OTLP endpoint, or an explicit OTEL_TRACES_EXPORTER other than "none".
func TracingEnabled(getenv config.Getenv) bool {
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" {
		return e != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracerProvider returns the tracer provider of one service, named service in every span
// it exports (the standalone binary makes one per service, so Jaeger shows gateway, scoring
// and offers apart). Exporter, protocol, endpoint and sampler come from the standard
// OTEL_* variables, read by the OpenTelemetry SDK itself. When tracing is not enabled the
// provider is a no-op: spans cost next to nothing, yet trace context from Yandex or another
// service still flows through headers. shutdown flushes what is buffered; call it last.
func NewTracerProvider(ctx context.Context, getenv config.Getenv, service string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if !TracingEnabled(getenv) {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("trace exporter: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(Resource(service)))
	return sdk, sdk.Shutdown, nil
}

// Resource names a service in traces and metrics. The name is ours, not OTEL_SERVICE_NAME:
// one process may host several services.
func Resource(service string) *resource.Resource {
	r, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(service), semconv.ServiceVersion(version()), semconv.ServiceNamespace("yacredits")))
	if err != nil { // only on conflicting schema URLs, which these are not
		return resource.NewSchemaless(semconv.ServiceName(service))
	}
	return r
}
