// Package offers prices scored searches against the product catalog and finishes them in
// the searches bucket: the last step of a search.
package offers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/pricing"
)

// instrumentation names this package in spans.
const instrumentation = "github.com/demobank/yacredits/services/offers"

// Config is what the offers service reads from its environment.
type Config struct {
	// CatalogFile (CATALOG_FILE) is the seed: the catalog written to the catalog bucket when
	// the bucket holds none (empty: the built-in demo catalog). Once the bucket has a
	// catalog, the service prices with the bucket's and follows its changes; change the
	// catalog with catalogctl, not this file. The file is still read and validated at every
	// start, so a broken one stops the service when it is deployed.
	CatalogFile string
	// Concurrency (CONCURRENCY) is how many searches one replica prices at once.
	Concurrency int
	// MaxOffers (OFFERS_MAX) caps the offers in one answer, best first: a catalog of hundreds
	// of products must not make an answer (and its stored record) of hundreds of offers.
	MaxOffers int
	// HealthAddr (HEALTH_ADDR) serves /healthz and /readyz for the orchestrator; empty
	// serves nothing (the standalone binary, where the gateway's endpoints cover the process).
	HealthAddr string
	// Links signs every proposal link (LINK_*); the keys are required.
	Links offerlink.Config
	NATS  config.NATS
	Log   telemetry.LogConfig
}

// LoadConfig reads and checks the variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{
		CatalogFile: r.String("CATALOG_FILE", ""),
		Concurrency: r.Int("CONCURRENCY", 64, 1, 4096),
		MaxOffers:   r.Int("OFFERS_MAX", 10, 1, 100),
		HealthAddr:  r.Addr("HEALTH_ADDR", ""),
		Links:       offerlink.ReadConfig(r),
		NATS:        config.ReadNATS(r),
		Log:         telemetry.ReadLogConfig(r),
	}
	c.Links.Require(r)
	return c, r.Err()
}

// Deps are what the service is given.
type Deps struct {
	JS  jetstream.JetStream
	Log zerolog.Logger
	Now func() time.Time // nil: time.Now
	// Tracer makes the service's spans, Meter its measurements (nil: none); Metrics is
	// served as /metrics beside the health endpoints (nil: not served).
	Tracer  trace.TracerProvider
	Meter   metric.MeterProvider
	Metrics http.Handler
	// Checks, if set, is given the service's readiness checks once they are made: the
	// standalone binary serves them on the gateway's /readyz.
	Checks func([]health.Check)
}

// Run consumes scored searches until ctx is cancelled, then finishes the ones in hand. It
// prices with the catalog in the catalog bucket (seeding an empty bucket with
// cfg.CatalogFile) and follows the bucket, so a catalog put there applies without a restart.
// What it needs from JetStream it declares again and again until it can (replicas starting
// together on a fresh cluster race each other); meanwhile /readyz says what is missing.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "offers").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	seed, err := readSeed(cfg.CatalogFile)
	if err != nil {
		return err // a broken deployment, which no retry heals
	}
	links, err := cfg.Links.Signer()
	if err != nil {
		return err
	}
	var (
		catalogs atomic.Pointer[catalogSource]
		consumer atomic.Pointer[bus.Consumer[contracts.Scored]]
		setupErr atomic.Pointer[error]
		loaded   = make(chan struct{})
	)
	checks := append(health.JetStream(deps.JS, []string{contracts.StreamLoan},
		[]string{contracts.BucketSearches, contracts.BucketCatalog}),
		health.Check{Name: "catalog", Probe: func(context.Context) (string, error) {
			cs := catalogs.Load()
			if cs == nil {
				if err := setupErr.Load(); err != nil {
					return "", fmt.Errorf("no catalog in force yet: %w", *err)
				}
				return "", errors.New("no catalog in force yet")
			}
			cur := cs.cur.Load()
			if cur == nil {
				return "", errors.New("no catalog in force yet")
			}
			return fmt.Sprintf("revision %d in force, %d products", cur.revision, len(cur.catalog.Products)), nil
		}},
		health.Func("consuming", func() error {
			c := consumer.Load()
			if c == nil {
				return errors.New("waiting for the searches bucket")
			}
			return c.Ready()
		}),
		health.Consumer(deps.JS, contracts.StreamLoan, contracts.ConsumerOffers))
	if deps.Checks != nil {
		deps.Checks(checks)
	}
	ops := health.Handler(health.List(checks...), deps.Metrics)
	grp, gctx := errgroup.WithContext(ctx)
	// Health first: alive while waiting for the gateway's bucket, ready only after.
	grp.Go(func() error { return health.Serve(gctx, cfg.HealthAddr, ops) })
	grp.Go(func() error {
		pause := 100 * time.Millisecond
		for {
			cs, err := startCatalogSource(gctx, deps.JS, cfg.NATS.Replicas, seed, log)
			if err == nil {
				catalogs.Store(cs)
				close(loaded)
				return cs.run(gctx)
			}
			if gctx.Err() != nil {
				return nil
			}
			if prev := setupErr.Load(); prev == nil || (*prev).Error() != err.Error() {
				log.Warn().Err(err).Dur("retry_in", pause).Msg("offers not ready: preparing the catalog again")
			}
			setupErr.Store(&err)
			select {
			case <-gctx.Done():
				return nil
			case <-time.After(pause):
			}
			pause = min(2*pause, 5*time.Second)
		}
	})
	grp.Go(func() error {
		store, err := search.Open(gctx, deps.JS, search.Options{Log: log, Meter: deps.Meter})
		if err != nil {
			if gctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-loaded:
		case <-gctx.Done():
			return nil
		}
		p := &pricer{store: store, catalog: func() *catalog.Catalog { return catalogs.Load().current() },
			links: links, linkLifetime: cfg.Links.Lifetime, now: now, maxOffers: cfg.MaxOffers, log: log}
		c := &bus.Consumer[contracts.Scored]{
			Name: contracts.ConsumerOffers, Subject: contracts.SubjectScored,
			Decode: contracts.DecodeScored, Handle: p.handle, OnDeadLetter: p.reject,
			Concurrency: cfg.Concurrency, Replicas: cfg.NATS.Replicas, Log: log,
			Tracer: deps.Tracer, Meter: deps.Meter,
		}
		consumer.Store(c)
		log.Info().Int("max_offers", cfg.MaxOffers).Msg("offers consuming")
		return c.Run(gctx, deps.JS)
	})
	return grp.Wait()
}

type pricer struct {
	store *search.Store
	// catalog is the catalog in force, read once per search.
	catalog      func() *catalog.Catalog
	links        *offerlink.Signer
	linkLifetime time.Duration
	now          func() time.Time
	maxOffers    int
	log          zerolog.Logger
}

// handle prices a scored search and finishes it. A search already done (the deadline
// passed first, or this is a redelivery) keeps what it has: the first finish wins.
func (p *pricer) handle(ctx context.Context, s *contracts.Scored) error {
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation).Start(ctx, "price offers",
		trace.WithAttributes(
			attribute.String("search_id", s.Request.SearchID),
			attribute.String("search.product_type", string(s.Request.ProductType)),
			attribute.String("score.verdict", string(s.Verdict)),
			attribute.String("score.grade", s.Grade)))
	quotes, dropped := pricing.Quotes(p.catalog(), s)
	if len(quotes) > p.maxOffers {
		quotes = quotes[:p.maxOffers] // best first: the cut keeps the best
	}
	now := p.now()
	if s.ValidUntil != nil && !s.ValidUntil.After(now) {
		quotes, dropped = nil, append(dropped, contracts.ReasonPreapprovalLapsed)
	}
	offers, err := p.sign(s, quotes, now)
	if err != nil {
		span.End()
		return bus.Permanent(err) // the catalog's validation bounds links, so this is a bug
	}
	span.SetAttributes(attribute.Int("offers.count", len(offers)))
	span.End()
	reasons := append(slices.Clone(s.Reasons), dropped...)
	if s.Verdict == contracts.Approved && len(offers) == 0 {
		reasons = append(reasons, contracts.ReasonNoOffers)
	}
	data, err := contracts.EncodeOffers(offers)
	if err != nil {
		return bus.Permanent(fmt.Errorf("encode offers: %w", err))
	}
	_, err = p.store.Finish(ctx, s.Request, telemetry.Traceparent(ctx), data, reasons, p.now())
	switch {
	case errors.Is(err, contracts.ErrAlreadyDone):
		return nil // a redelivery, a re-send, or the deadline came first: the first finish stands
	case errors.Is(err, search.ErrConflict):
		p.log.Warn().Ctx(ctx).Str("search_id", s.Request.SearchID).
			Msg("result dropped: the search id holds a different request, which stands")
		return nil
	}
	return err
}

// sign adds to every proposal link the token that says which offer of which search it is,
// so that the bank's site can trust it and a conversion can be traced to the search.
func (p *pricer) sign(s *contracts.Scored, quotes []pricing.Quoted, now time.Time) ([]contracts.Offer, error) {
	if len(quotes) == 0 {
		return nil, nil
	}
	var validUntil time.Time
	if s.ValidUntil != nil {
		validUntil = *s.ValidUntil
	}
	offers := make([]contracts.Offer, len(quotes))
	for i, q := range quotes {
		o := q.Offer
		claims := offerlink.ForOffer("", s.Request.SearchID, q.ProductID, o, now, p.linkLifetime, validUntil)
		if err := p.links.SignOffer(&o, claims); err != nil {
			return nil, fmt.Errorf("offer %s: %w", q.ProductID, err)
		}
		offers[i] = o
	}
	return offers, nil
}

// reject finishes a search whose message was dead-lettered.
func (p *pricer) reject(ctx context.Context, searchID string, s *contracts.Scored, reason string) error {
	var req *contracts.LoanRequested
	if s != nil {
		req = &s.Request
	}
	_, err := p.store.Reject(ctx, searchID, req, telemetry.Traceparent(ctx), reason, p.now())
	if errors.Is(err, contracts.ErrAlreadyDone) || errors.Is(err, search.ErrNotFound) || errors.Is(err, search.ErrConflict) {
		return nil
	}
	return err
}
