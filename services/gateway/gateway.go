// Package gateway is the public HTTP side of the Credits API: it validates a search,
// records it durably in the searches bucket, hands it to scoring over JetStream, and
// answers from the bucket, synchronously when the search finishes within the budget and
// by polling otherwise.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/kvstore"
	"github.com/demobank/yacredits/pkg/phone"
)

// instrumentation names this package in spans and metrics.
const instrumentation = "github.com/demobank/yacredits/services/gateway"

// Deps are what the gateway is given rather than builds.
type Deps struct {
	JS  jetstream.JetStream
	Log zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Listening, if set, is told the bound addresses (tests listen on port 0).
	Listening func(api, health net.Addr)
	// Tracer makes the gateway's spans (nil: none, but trace context still flows).
	Tracer trace.TracerProvider
	// Meter measures requests and searches (nil: nothing is measured).
	Meter metric.MeterProvider
	// Metrics serves /metrics beside the health endpoints (nil: not served).
	Metrics http.Handler
}

type gateway struct {
	cfg      Config
	js       jetstream.JetStream
	log      zerolog.Logger
	searches *searches
	tracer   trace.TracerProvider
	meter    metric.MeterProvider
	metrics  http.Handler
}

// Run serves the API until ctx is cancelled, then stops taking requests, lets in-flight
// ones finish within the shutdown timeout, and returns.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "gateway").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	if deps.Tracer == nil {
		deps.Tracer = tracenoop.NewTracerProvider()
	}
	if deps.Meter == nil {
		deps.Meter = metricnoop.NewMeterProvider()
	}
	hasher, err := phone.NewHasher(cfg.PhoneHashKey)
	if err != nil {
		return err
	}
	if err := bus.EnsureStreams(ctx, deps.JS, cfg.NATS.Replicas); err != nil {
		return err
	}
	store, err := kvstore.Ensure(ctx, deps.JS, cfg.Retention, cfg.NATS.Replicas)
	if err != nil {
		return err
	}
	if store, err = store.WithMeter(deps.Meter); err != nil {
		return err
	}
	marks, err := deps.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: contracts.BucketGateway, Description: "gateway bookkeeping", History: 1,
		Storage: jetstream.FileStorage, Replicas: cfg.NATS.Replicas,
	})
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", contracts.BucketGateway, err)
	}
	pub := bus.NewPublisher(deps.JS, cfg.NATS.Replicas)
	tr := &tracker{
		store: store, pub: pub, marks: marks, log: log, now: now, tracer: deps.Tracer.Tracer(instrumentation),
		sweepInterval: cfg.SweepInterval, republishAfter: cfg.RepublishAfter,
		waiters: map[string]map[chan *contracts.Search]struct{}{}, pending: map[string]*pendingSearch{},
	}
	g := &gateway{cfg: cfg, js: deps.JS, log: log, tracer: deps.Tracer, meter: deps.Meter, metrics: deps.Metrics, searches: &searches{
		store: store, pub: pub, tracker: tr, hasher: hasher, conn: deps.JS.Conn(),
		budget: cfg.SyncBudget, deadline: cfg.Deadline, now: now, log: log,
	}}

	apiLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	servers := []*http.Server{g.server(g.routes(cfg.HealthAddr == ""))}
	listeners := []net.Listener{apiLn}
	healthAddr := apiLn.Addr()
	if cfg.HealthAddr != "" {
		hl, err := net.Listen("tcp", cfg.HealthAddr)
		if err != nil {
			apiLn.Close()
			return fmt.Errorf("listen on HEALTH_ADDR %s: %w", cfg.HealthAddr, err)
		}
		servers, listeners, healthAddr = append(servers, g.server(g.healthHandler())), append(listeners, hl), hl.Addr()
	}
	log.Info().Str("api", apiLn.Addr().String()).Str("health", healthAddr.String()).
		Dur("sync_budget", cfg.SyncBudget).Dur("deadline", cfg.Deadline).Msg("gateway listening")
	if deps.Listening != nil {
		deps.Listening(apiLn.Addr(), healthAddr)
	}

	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return tr.run(gctx) })
	for i, srv := range servers {
		grp.Go(func() error {
			if err := srv.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", listeners[i].Addr(), err)
			}
			return nil
		})
	}
	grp.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		var errs []error
		for _, srv := range servers {
			errs = append(errs, srv.Shutdown(shutdownCtx))
		}
		return errors.Join(errs...)
	})
	return grp.Wait()
}

func (g *gateway) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      g.cfg.SyncBudget + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
}
