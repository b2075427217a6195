// Package conversions closes the loop with Yandex: the bank's application system reports a
// contract signed after a click on a proposal link, the service checks it against the
// link's signed token and records it durably, and a worker delivers it to Yandex's
// endpoint, retrying until Yandex answers, at least once and under a stable id. The same
// internal address serves the public keys (JWKS) and a verification endpoint for the
// bank's site. It is the only workload that calls out to the internet.
package conversions

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/pkg/capacity"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/services/conversions/yandex"
)

// Config is what the conversions service reads from its environment.
type Config struct {
	// Addr (CONVERSIONS_ADDR) is the internal address: intake, JWKS and verification. Never
	// the public one: Yandex has no business here.
	Addr string
	// IntakeTokens (INTAKE_TOKENS) are the bearer tokens of the bank's application system,
	// comma-separated so that one can be rotated; SiteTokens (SITE_TOKENS) those of the bank's
	// site, which may verify links and nothing else; OpsTokens (OPS_TOKENS) the operators',
	// which may list conversions and queue failed ones again (yactl conversions) and nothing
	// else. All empty is allowed on loopback only.
	IntakeTokens, SiteTokens, OpsTokens []string
	// Retention (CONVERSIONS_RETENTION) is how long a conversion is kept, delivered or not.
	Retention time.Duration
	// Yandex's endpoint (YANDEX_CONVERSIONS_URL, YANDEX_TOKEN, YANDEX_PARTNER_ID). With no
	// URL, conversions are recorded and kept queued, none is sent.
	YandexURL, YandexToken string
	YandexPartnerID        int64 // the bank's id at Yandex: an integer (spec §9)
	// SendTimeout (YANDEX_TIMEOUT) bounds one send.
	SendTimeout time.Duration
	Delivery    Delivery // DELIVERY_BATCH, DELIVERY_BATCH_WAIT, DELIVERY_ACK_WAIT, DELIVERY_RETRY_BASE, DELIVERY_RETRY_MAX
	// WarnAge (CONVERSIONS_WARN_AGE): an undelivered conversion whose contract is older is
	// logged as an error every WarnEvery (CONVERSIONS_WARN_EVERY); Yandex takes them for 11
	// days, and recommends 3.
	WarnAge, WarnEvery time.Duration
	HealthAddr         string // HEALTH_ADDR: /healthz, /readyz, /metrics
	Links              offerlink.Config
	NATS               config.NATS
	Log                telemetry.LogConfig
}

// LoadConfig reads and checks the variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{
		Addr:            r.Addr("CONVERSIONS_ADDR", "127.0.0.1:8090"),
		IntakeTokens:    r.List("INTAKE_TOKENS"),
		SiteTokens:      r.List("SITE_TOKENS"),
		OpsTokens:       r.List("OPS_TOKENS"),
		Retention:       provision.ReadConversionsRetention(r),
		YandexURL:       r.String("YANDEX_CONVERSIONS_URL", ""),
		YandexToken:     r.Secret("YANDEX_TOKEN", ""),
		YandexPartnerID: int64(r.Int("YANDEX_PARTNER_ID", 0, 1, math.MaxInt)),
		SendTimeout:     r.Duration("YANDEX_TIMEOUT", 10*time.Second, 100*time.Millisecond, 5*time.Minute),
		Delivery: Delivery{
			Batch:     r.Int("DELIVERY_BATCH", 100, 1, 1000),
			BatchWait: r.Duration("DELIVERY_BATCH_WAIT", time.Second, 10*time.Millisecond, time.Minute),
			AckWait:   provision.ReadDeliveryAckWait(r),
			RetryBase: r.Duration("DELIVERY_RETRY_BASE", time.Second, time.Millisecond, time.Hour),
			RetryMax:  r.Duration("DELIVERY_RETRY_MAX", 5*time.Minute, time.Millisecond, 6*time.Hour),
		},
		WarnAge:    r.Duration("CONVERSIONS_WARN_AGE", 7*24*time.Hour, time.Hour, 11*24*time.Hour),
		WarnEvery:  r.Duration("CONVERSIONS_WARN_EVERY", time.Hour, time.Second, 24*time.Hour),
		HealthAddr: r.Addr("HEALTH_ADDR", ""),
		Links:      offerlink.ReadConfig(r),
		NATS:       config.ReadNATS(r),
		Log:        telemetry.ReadLogConfig(r),
	}
	if c.YandexURL != "" {
		if u, err := url.Parse(c.YandexURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && config.Loopback(u.Host))) {
			r.Fail("YANDEX_CONVERSIONS_URL", "want an https URL (http only to a loopback address)")
		}
		if c.YandexToken == "" || c.YandexPartnerID == 0 {
			r.Fail("YANDEX_CONVERSIONS_URL", "needs YANDEX_TOKEN and YANDEX_PARTNER_ID")
		}
	}
	if !config.AllLoopback(c.Addr, c.HealthAddr) {
		if len(c.IntakeTokens) == 0 {
			r.Fail("INTAKE_TOKENS", "required when CONVERSIONS_ADDR (%s) or HEALTH_ADDR is beyond loopback", c.Addr)
		}
		r.RequireSecrets("INTAKE_TOKENS", c.IntakeTokens...)
		r.RequireSecrets("SITE_TOKENS", c.SiteTokens...)
		r.RequireSecrets("OPS_TOKENS", c.OpsTokens...)
	}
	if len(c.SiteTokens) > 0 && len(c.IntakeTokens) == 0 {
		r.Fail("SITE_TOKENS", "set without INTAKE_TOKENS, which leaves every route open: set both, or neither on loopback")
	}
	for _, t := range c.SiteTokens {
		if slices.Contains(c.IntakeTokens, t) {
			r.Fail("SITE_TOKENS", "a token is also one of INTAKE_TOKENS: the site would report conversions")
		}
	}
	if len(c.OpsTokens) > 0 && len(c.IntakeTokens) == 0 {
		r.Fail("OPS_TOKENS", "set without INTAKE_TOKENS, which leaves every route open: set both, or neither on loopback")
	}
	for _, t := range c.OpsTokens {
		if slices.Contains(c.IntakeTokens, t) || slices.Contains(c.SiteTokens, t) {
			r.Fail("OPS_TOKENS", "a token is also one of INTAKE_TOKENS or SITE_TOKENS: one caller would hold two roles")
		}
	}
	if c.Delivery.RetryBase > c.Delivery.RetryMax {
		r.Fail("DELIVERY_RETRY_BASE", "longer than DELIVERY_RETRY_MAX")
	}
	// A fetch holds its first conversions for up to DELIVERY_BATCH_WAIT before the worker
	// starts telling the broker (every third of DELIVERY_ACK_WAIT) that it still has them.
	if c.Delivery.AckWait < 3*c.Delivery.BatchWait {
		r.Fail("DELIVERY_ACK_WAIT", "at least three times DELIVERY_BATCH_WAIT (%s), or a batch is handed to another replica while this one waits to fill it", c.Delivery.BatchWait)
	}
	c.Links.Require(r)
	return c, r.Err()
}

// Deps are what the service is given.
type Deps struct {
	JS      jetstream.JetStream
	Log     zerolog.Logger
	Now     func() time.Time // nil: time.Now
	Meter   metric.MeterProvider
	Metrics http.Handler // served as /metrics on HEALTH_ADDR (nil: not served)
	// Checks, if set, is given the service's readiness checks (the standalone binary).
	Checks func([]health.Check)
	// afterSend is the tests' hook into the worker (see worker.afterSend).
	afterSend func()
}

// Run serves the internal address and delivers conversions until ctx is cancelled.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "conversions").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	if cfg.Links.Keys == nil {
		return errors.New("conversions: no link keys (LINK_KEYS_FILE): no link could be opened")
	}
	idx := newIndex()
	m, err := newMetrics(deps.Meter, idx, now)
	if err != nil {
		return fmt.Errorf("conversions: metrics: %w", err)
	}
	var send *yandex.Client // nil: nothing is sent
	if cfg.YandexURL != "" {
		send = &yandex.Client{URL: cfg.YandexURL, Token: cfg.YandexToken, PartnerID: cfg.YandexPartnerID,
			HTTP: &http.Client{Timeout: cfg.SendTimeout}}
	}
	if send == nil {
		log.Warn().Msg("YANDEX_CONVERSIONS_URL is not set: conversions are recorded and kept queued, none is delivered")
	}

	var (
		store    atomic.Pointer[Store]
		searches atomic.Pointer[search.Store]
		setupErr atomic.Pointer[error]
	)
	in := &intake{store: store.Load, searches: searches.Load, verifier: cfg.Links.Verifier(now), window: cfg.Links.ReportingWindow,
		metrics: m, log: log, now: now}
	for _, t := range cfg.IntakeTokens {
		in.tokens = append(in.tokens, sha256.Sum256([]byte(t)))
	}
	for _, t := range cfg.SiteTokens {
		in.site = append(in.site, sha256.Sum256([]byte(t)))
	}
	for _, t := range cfg.OpsTokens {
		in.ops = append(in.ops, sha256.Sum256([]byte(t)))
	}
	for _, kid := range cfg.Links.Keys.IDs() {
		if at := cfg.Links.Keys.RetiredAt(kid); !at.IsZero() {
			log.Info().Str("link_key", kid).Time("retired_at", at).
				Time("prunable_after", at.Add(cfg.Links.Lifetime+cfg.Links.ReportingWindow)).
				Msg("a retired link key: it opens the links it sealed until pruned")
		}
	}
	checks := append(health.JetStream(deps.JS, []string{contracts.StreamConversions}, []string{contracts.BucketConversions}),
		provision.Probe(deps.JS, provision.ConversionsService(provision.Settings{Replicas: cfg.NATS.Replicas,
			ConversionsRetention: cfg.Retention, DeliveryAckWait: cfg.Delivery.AckWait})...),
		health.Func("conversions index", func() error {
			if err := setupErr.Load(); err != nil && store.Load() == nil {
				return *err
			}
			idx.mu.Lock()
			defer idx.mu.Unlock()
			if !idx.ready {
				return errors.New("reading the conversions bucket")
			}
			return nil
		}))
	if send != nil {
		checks = append(checks, health.Consumer(deps.JS, contracts.StreamConversions, contracts.ConsumerConversionsDelivery))
	}
	if deps.Checks != nil {
		deps.Checks(checks)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("conversions: listen on %s: %w", cfg.Addr, err)
	}
	log.Info().Str("addr", ln.Addr().String()).Msg("conversions listening")
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error {
		return health.Serve(gctx, cfg.HealthAddr, health.Handler(health.List(checks...), deps.Metrics))
	})
	grp.Go(func() error { return health.ServeListener(gctx, ln, in.routes()) })
	// How full the conversions bucket is, for the StoreFilling alert (a full one answers the
	// bank's reports 503: nothing kept is dropped for room).
	space := capacity.New("KV_"+contracts.BucketConversions, capacity.StreamInfo(deps.JS, "KV_"+contracts.BucketConversions))
	if deps.Meter != nil {
		if err := capacity.Register(deps.Meter.Meter(instrumentation), space); err != nil {
			return fmt.Errorf("conversions: metrics: %w", err)
		}
	}
	grp.Go(func() error { space.Run(gctx, capacity.ReportInterval); return nil })
	grp.Go(func() error {
		// The searches bucket is the gateway's; it may not exist yet on a fresh system.
		for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
			s, err := search.Open(gctx, deps.JS, search.Options{Log: log})
			if err == nil {
				searches.Store(s)
				return nil
			}
			if sleep(gctx, pause) != nil {
				return nil
			}
		}
	})
	grp.Go(func() error {
		var s *Store
		for pause := 100 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
			var err error
			if s, err = BindStore(gctx, deps.JS); err == nil {
				break
			}
			if gctx.Err() != nil {
				return nil
			}
			if prev := setupErr.Load(); prev == nil || (*prev).Error() != err.Error() {
				log.Warn().Err(err).Dur("retry_in", pause).Msg("conversions not ready: binding the bucket again")
			}
			setupErr.Store(&err)
			if sleep(gctx, pause) != nil {
				return nil
			}
		}
		store.Store(s)
		log.Info().Bool("delivering", send != nil).Msg("conversions recording")
		g, wctx := errgroup.WithContext(gctx)
		g.Go(func() error { return s.follow(wctx, idx, log) })
		g.Go(func() error { return warnOverdue(wctx, idx, cfg.WarnAge, cfg.WarnEvery, now, log) })
		if send != nil {
			w := &worker{store: s, send: send, cfg: cfg.Delivery, metrics: m, log: log, now: now, afterSend: deps.afterSend}
			g.Go(func() error { return w.run(wctx, deps.JS) })
		}
		return g.Wait()
	})
	return grp.Wait()
}

// follow keeps idx up to date with the bucket until ctx ends, reading it anew every hour:
// records the bucket drops at the end of their retention leave no delete marker to read.
func (s *Store) follow(ctx context.Context, idx *index, log zerolog.Logger) error {
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, time.Hour)
		err := s.followOnce(wctx, idx)
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("read the conversions bucket")
			if sleep(ctx, time.Second) != nil {
				return nil
			}
		}
	}
	return nil
}

// followInterval is how often the bucket is read for new writes: by message gets, since a
// watch's consumer could be set to deliver anywhere (Store.Each). The index serves
// operators' summaries and the overdue warning, for which a second is instant.
const followInterval = time.Second

// followOnce reads the bucket from its first record into a fresh index, then reads what is
// written after, every followInterval, until ctx ends or a read fails.
func (s *Store) followOnce(ctx context.Context, idx *index) error {
	fresh := newIndex()
	apply := func(ix *index) func(string, *contracts.Conversion, error) error {
		return func(key string, c *contracts.Conversion, bad error) error {
			switch {
			case bad != nil: // not one of ours: nothing to summarise
			case c == nil:
				ix.remove(key)
			default:
				ix.put(c)
			}
			return nil
		}
	}
	// Until the first pass is complete, the old index keeps answering.
	next, err := s.read(ctx, 0, apply(fresh))
	if err != nil {
		return err
	}
	idx.replace(fresh)
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if next, err = s.read(ctx, next, apply(idx)); err != nil {
			return err
		}
	}
}

// warnOverdue logs, every every, the undelivered conversions whose contract is older than
// age: loud, and long before Yandex's 11 days run out.
func warnOverdue(ctx context.Context, idx *index, age, every time.Duration, now func() time.Time, log zerolog.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s := idx.summaryOver(now(), age)
		if len(s.overdue) == 0 {
			continue
		}
		ids := s.overdue[:min(len(s.overdue), 10)]
		log.Error().Int("conversions", len(s.overdue)).Strs("ids", ids).Dur("older_than", age).
			Dur("oldest", s.oldest).
			Msg("conversions are still not delivered to Yandex, which takes them only 11 days after the contract: " +
				"check YANDEX_CONVERSIONS_URL and the failed ones (yactl conversions list), or upload an export by hand")
	}
}
