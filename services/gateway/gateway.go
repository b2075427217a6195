// Package gateway is the public HTTP side of the Credits API: it validates a search, hands
// it to scoring over JetStream, and answers from the searches bucket, synchronously when
// the search finishes within the budget and by polling otherwise.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/capacity"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/testphones"
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
	// Checks, if set, adds the readiness checks of other services in this process to
	// /readyz (the standalone binary's scoring and offers); called at every /readyz.
	Checks func() []health.Check
}

type gateway struct {
	cfg     Config
	js      jetstream.JetStream
	log     zerolog.Logger
	tracer  trace.TracerProvider
	meter   metric.MeterProvider
	metrics http.Handler
	others  func() []health.Check // other services' readiness, in the standalone binary
	// searches is set once JetStream's streams and buckets are in place; until then the API
	// answers 503 and /readyz says what is missing.
	searches atomic.Pointer[searches]
	setupErr atomic.Pointer[error]
	notifier *notifier
	limiter  *rate.Limiter       // RATE_LIMIT, one for the whole API; nil: none
	spaces   []*capacity.Gauge   // how full the searches bucket and the audit trail are, read every SWEEP_INTERVAL
	shed     metric.Int64Counter // searches refused for it
	edge     *edge
}

// Run serves the API until ctx is cancelled, then stops taking requests, lets in-flight
// ones finish within the shutdown timeout, and only then stops following the bucket, so
// that a POST in flight still gets its answer. It listens at once; the streams and buckets
// it needs are declared in the background, again and again until they are, meanwhile the
// API answers 503 and /readyz names what is missing.
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
	keys, err := phone.NewKeyring(cfg.PhoneHashKey, cfg.PhoneHashKeysOld...)
	if err != nil {
		return err
	}
	tests, err := testphones.Load(cfg.TestPhones, keys.Current())
	if err != nil {
		return err
	}
	g := &gateway{cfg: cfg, js: deps.JS, log: log, tracer: deps.Tracer, meter: deps.Meter, metrics: deps.Metrics, others: deps.Checks,
		limiter: newLimiter(cfg.RateLimit, cfg.RateBurst)}
	if g.edge, err = newEdge(deps.Tracer, deps.Meter, func(r *http.Request) bool {
		return allowed(cfg.TraceTrusted, clientIP(r, cfg.Auth.ClientIPHeader, cfg.Auth.TrustedProxies))
	}, log); err != nil {
		return err
	}
	for _, stream := range []string{"KV_" + contracts.BucketSearches, contracts.StreamAudit} {
		g.spaces = append(g.spaces, capacity.New(stream, capacity.StreamInfo(g.js, stream)))
	}
	meter := deps.Meter.Meter(instrumentation)
	if err := capacity.Register(meter, g.spaces...); err != nil {
		return err
	}
	if g.shed, err = meter.Int64Counter("credits.searches.shed",
		metric.WithDescription("New searches refused (503) before anything was accepted, by reason")); err != nil {
		return err
	}
	starting := errors.New("declaring streams and buckets")
	g.setupErr.Store(&starting)

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
	if cfg.Auth.Disabled {
		log.Warn().Msg("AUTH_DISABLED=true: the API takes requests without credentials; another layer must authenticate Yandex")
	}
	// Off is a fine default on a laptop, and a decision to be said out loud anywhere else.
	if !config.Loopback(cfg.HTTPAddr) {
		if len(cfg.Auth.AllowedNetworks) == 0 {
			log.Warn().Msg("ALLOWED_NETWORKS is empty: callers from any network are let through to authentication")
		}
		if cfg.RateLimit == 0 {
			log.Warn().Msg("RATE_LIMIT is 0: nothing bounds the requests this gateway takes")
		}
		if cfg.HealthAddr == "" {
			log.Warn().Msg("HEALTH_ADDR is empty: /readyz and /metrics, which describe our infrastructure, are served on the public API address")
		}
	}
	log.Info().Str("api", apiLn.Addr().String()).Str("health", healthAddr.String()).
		Dur("sync_budget", cfg.SyncBudget).Dur("deadline", cfg.Deadline).Msg("gateway listening")
	if deps.Listening != nil {
		deps.Listening(apiLn.Addr(), healthAddr)
	}

	// The bucket is followed until HTTP has drained: work outlives ctx by that much.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var background sync.WaitGroup
	background.Add(1)
	go func() {
		defer background.Done()
		g.start(work, deps, keys, tests, now)
	}()

	grp, gctx := errgroup.WithContext(ctx)
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
	err = grp.Wait()
	stopWork()
	background.Wait()
	return err
}

// start checks that what the gateway needs is provisioned and binds to it, retrying until
// it can, then follows the bucket.
func (g *gateway) start(ctx context.Context, deps Deps, keys *phone.Keyring, tests *testphones.Set, now func() time.Time) {
	var (
		store *search.Store
		marks jetstream.KeyValue
		from  uint64
	)
	pause := 100 * time.Millisecond
	for {
		err := provision.Check(ctx, g.js, g.provisioned()...)
		if err == nil {
			store, err = search.Bind(ctx, g.js, search.Options{Log: g.log, Meter: deps.Meter})
		}
		if err == nil {
			marks, err = bus.Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
				return g.js.KeyValue(ctx, contracts.BucketGateway)
			})
		}
		if err == nil {
			from, err = loadCheckpoint(ctx, marks)
		}
		if err == nil {
			break
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return
		}
		if prev := g.setupErr.Load(); prev == nil || (*prev).Error() != err.Error() {
			g.log.Warn().Err(err).Dur("retry_in", pause).Msg("gateway not ready: its streams and buckets are not as planned (yactl provision)")
		}
		g.setupErr.Store(&err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
	table := newPendingTable()
	g.notifier = newNotifier(store, table, from, g.log)
	sw := &sweeper{
		store: store, pub: bus.NewPublisher(g.js), marks: marks, checkpoint: g.notifier.checkpoint,
		forget: g.notifier.forget, table: table, log: g.log,
		tracer: g.tracer.Tracer(instrumentation), now: now, interval: g.cfg.SweepInterval,
		republishAfter: g.cfg.RepublishAfter, saved: from,
		loan: func(ctx context.Context) (*jetstream.StreamInfo, error) {
			st, err := g.js.Stream(ctx, contracts.StreamLoan) // one STREAM.INFO request
			if err != nil {
				return nil, err
			}
			return st.CachedInfo(), nil
		},
	}
	for _, space := range g.spaces {
		if err := space.Poll(ctx); err != nil {
			g.log.Warn().Err(err).Str("stream", space.Stream).Msg("how full the stream is not read yet")
		}
	}
	g.searches.Store(&searches{
		store: store, pub: bus.NewPublisher(g.js), notifier: g.notifier, keys: keys, tests: tests,
		conn: g.js.Conn(), spaces: g.spaces, shed: g.shed, budget: g.cfg.SyncBudget, deadline: g.cfg.Deadline, now: now, log: g.log,
	})
	g.setupErr.Store(nil)
	g.log.Info().Uint64("resume_from", from).Msg("following the searches bucket")
	var wg sync.WaitGroup
	wg.Add(2 + len(g.spaces))
	go func() { defer wg.Done(); g.notifier.run(ctx) }()
	go func() { defer wg.Done(); sw.run(ctx) }()
	for _, space := range g.spaces {
		go func() { defer wg.Done(); space.Run(ctx, g.cfg.SweepInterval) }()
	}
	wg.Wait()
}

// setUp says whether the gateway has bound to its streams and buckets.
func (g *gateway) setUp() error {
	if err := g.setupErr.Load(); err != nil {
		return *err
	}
	return nil
}

// provisioned is what the gateway uses, as it expects it.
func (g *gateway) provisioned() []provision.Item {
	return provision.Gateway(provision.Settings{Replicas: g.cfg.NATS.Replicas, SearchRetention: g.cfg.Retention})
}

// watch says how the watch of the searches bucket is: live and caught up, with how far it
// has read and how many searches it holds pending, or what is wrong with it.
func (g *gateway) watch(context.Context) (string, error) {
	if g.setupErr.Load() != nil || g.notifier == nil {
		return "", errors.New("not following the searches bucket yet")
	}
	if err := g.notifier.ready(); err != nil {
		return "", err
	}
	newest, pending := g.notifier.position()
	return fmt.Sprintf("caught up at revision %d, %d searches pending", newest, pending), nil
}

func (g *gateway) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(5*time.Second, g.cfg.ReadTimeout),
		ReadTimeout:       g.cfg.ReadTimeout,
		WriteTimeout:      g.cfg.SyncBudget + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
}
