package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// edge is the telemetry of the public port: each request's server span and its metrics,
// carrying only what we choose. The gateway is an endpoint on the internet, so nothing a
// caller writes becomes a metric label or a span attribute of unbounded variety (no Host,
// path, user agent or X-Forwarded-For: the request metrics are labelled by method, matched
// route and status alone, and a path that matched no route has no route label), and the
// caller's trace context is not obeyed: the request starts a trace of its own, linked to the
// caller's, so that a caller can neither force sampling nor plant baggage that would travel
// to the other services and be stored with the search. Callers from TRACE_TRUSTED_NETWORKS
// (our own systems) continue their trace instead. otelhttp believes the inbound context and
// records the Host and the user agent, which is why this is written here.
type edge struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	trusted  func(*http.Request) bool
	log      zerolog.Logger
}

// newEdge makes the edge's instruments; trusted tells the callers whose trace to continue.
func newEdge(tp trace.TracerProvider, mp metric.MeterProvider, trusted func(*http.Request) bool, log zerolog.Logger) (*edge, error) {
	d, err := mp.Meter(instrumentation).Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests, by method, route and status"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 7.5, 10))
	if err != nil {
		return nil, err
	}
	return &edge{tracer: tp.Tracer(instrumentation), duration: d, trusted: trusted, log: log}, nil
}

// knownMethods bound the method label: anything else is "_OTHER", as semantic conventions say.
var knownMethods = map[string]bool{http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodHead: true, http.MethodOptions: true, http.MethodPatch: true}

// middleware writes, for every request but the probes', a span, its metrics and one access
// log line. It never logs bodies or query strings: a body holds a phone number.
func (e *edge) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isOperational(r.URL.Path) {
			next.ServeHTTP(w, r) // probes and scrapes every few seconds would only be noise
			return
		}
		start := time.Now()
		ctx := r.Context()
		remote := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header)))
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
		switch {
		case remote.IsValid() && e.trusted(r):
			ctx = trace.ContextWithRemoteSpanContext(ctx, remote)
		case remote.IsValid():
			opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: remote}))
		}
		method := r.Method
		if !knownMethods[method] {
			method = "_OTHER"
		}
		ctx, span := e.tracer.Start(ctx, method, opts...)
		defer span.End()
		info := &requestInfo{}
		ctx = context.WithValue(ctx, requestInfoKey{}, info)
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r.WithContext(ctx))
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method), semconv.HTTPResponseStatusCode(status)}
		// Known only after routing, and only for a path that matched a route of ours.
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route != "" && route != "/*" {
			attrs = append(attrs, semconv.HTTPRoute(route))
			span.SetName(method + " " + route)
		}
		client := info.client
		if !client.IsValid() {
			client = peerAddr(r)
		}
		span.SetAttributes(attrs...)
		span.SetAttributes(attribute.String("client.address", client.String()))
		if status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(status))
		}
		took := time.Since(start)
		e.duration.Record(ctx, took.Seconds(), metric.WithAttributes(attrs...))
		l := e.log.Info().Ctx(ctx).Str("method", method).Str("route", route).Int("status", status).Str("search_id", info.searchID)
		if info.test {
			l = l.Bool("test", true)
		}
		l.Str("client", client.String()).Dur("took", took).Msg("http request")
	})
}
