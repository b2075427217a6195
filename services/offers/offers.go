// Package offers prices scored searches against the product catalog and finishes them in
// the searches bucket: the last step of a search.
package offers

import (
	"context"
	"errors"
	"net/http"
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
	"github.com/demobank/yacredits/pkg/kvstore"
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
	// HealthAddr (HEALTH_ADDR) serves /healthz and /readyz for the orchestrator; empty
	// serves nothing (the standalone binary, where the gateway's endpoints cover the process).
	HealthAddr string
	NATS       config.NATS
	Log        telemetry.LogConfig
}

// LoadConfig reads and checks the variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{
		CatalogFile: r.String("CATALOG_FILE", ""),
		Concurrency: r.Int("CONCURRENCY", 64, 1, 4096),
		HealthAddr:  r.Addr("HEALTH_ADDR", ""),
		NATS:        config.ReadNATS(r),
		Log:         telemetry.ReadLogConfig(r),
	}
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
}

// Run consumes scored searches until ctx is cancelled, then finishes the ones in hand. It
// prices with the catalog in the catalog bucket (seeding an empty bucket with
// cfg.CatalogFile) and follows the bucket, so a catalog put there applies without a restart.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "offers").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	seed, err := readSeed(cfg.CatalogFile)
	if err != nil {
		return err
	}
	catalogs, err := startCatalogSource(ctx, deps.JS, cfg.NATS.Replicas, seed, log)
	if err != nil {
		return err
	}
	ops := health.Handler(health.JetStream(deps.JS, []string{contracts.StreamLoan},
		[]string{contracts.BucketSearches, contracts.BucketCatalog}), deps.Metrics)
	grp, gctx := errgroup.WithContext(ctx)
	// Health first: alive while waiting for the gateway's bucket, ready only after.
	grp.Go(func() error { return health.Serve(gctx, cfg.HealthAddr, ops) })
	grp.Go(func() error { return catalogs.run(gctx) })
	grp.Go(func() error {
		store, err := kvstore.Open(gctx, deps.JS)
		if err != nil {
			return err
		}
		if store, err = store.WithMeter(deps.Meter); err != nil {
			return err
		}
		p := &pricer{store: store, catalog: catalogs.current, now: now}
		c := &bus.Consumer[contracts.Scored]{
			Name: contracts.ConsumerOffers, Subject: contracts.SubjectScored,
			Decode: contracts.DecodeScored, Handle: p.handle, OnDeadLetter: p.reject,
			Concurrency: cfg.Concurrency, Replicas: cfg.NATS.Replicas, Log: log,
			Tracer: deps.Tracer, Meter: deps.Meter,
		}
		log.Info().Msg("offers consuming")
		return c.Run(gctx, deps.JS)
	})
	return grp.Wait()
}

type pricer struct {
	store *kvstore.Store
	// catalog is the catalog in force, read once per search.
	catalog func() *catalog.Catalog
	now     func() time.Time
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
	offers := pricing.Price(p.catalog(), s)
	span.SetAttributes(attribute.Int("offers.count", len(offers)))
	span.End()
	reasons := s.Reasons
	if s.Verdict == contracts.Approved && len(offers) == 0 {
		reasons = append(reasons, contracts.ReasonNoOffers)
	}
	_, err := p.store.Finish(ctx, s.Request.SearchID, offers, reasons, p.now())
	switch {
	case errors.Is(err, contracts.ErrAlreadyDone):
		return nil
	case errors.Is(err, kvstore.ErrNotFound):
		// Past retention or never stored: nothing to finish, and no retry will change that.
		return bus.Permanent(err)
	}
	return err
}

// reject finishes a search whose message was dead-lettered.
func (p *pricer) reject(ctx context.Context, searchID, reason string) error {
	_, err := p.store.Finish(ctx, searchID, nil, []string{reason}, p.now())
	if errors.Is(err, contracts.ErrAlreadyDone) || errors.Is(err, kvstore.ErrNotFound) {
		return nil
	}
	return err
}
