// Package offers prices scored searches against the product catalog and finishes them in
// the searches bucket: the last step of a search.
package offers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
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

// Config is what the offers service reads from its environment.
type Config struct {
	// CatalogFile (CATALOG_FILE) is the product catalog; empty uses the built-in demo one.
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
}

// LoadCatalog reads the catalog file, or the demo catalog when path is empty.
func LoadCatalog(path string) (*catalog.Catalog, error) {
	if path == "" {
		return catalog.Demo()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	c, err := catalog.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}

// Run consumes scored searches until ctx is cancelled, then finishes the ones in hand.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	log := deps.Log.With().Str("service", "offers").Logger()
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	cat, err := LoadCatalog(cfg.CatalogFile)
	if err != nil {
		return err
	}
	store, err := kvstore.Open(ctx, deps.JS)
	if err != nil {
		return err
	}
	p := &pricer{store: store, catalog: cat, now: now}
	c := &bus.Consumer[contracts.Scored]{
		Name: contracts.ConsumerOffers, Subject: contracts.SubjectScored,
		Decode: contracts.DecodeScored, Handle: p.handle, OnDeadLetter: p.reject,
		Concurrency: cfg.Concurrency, Replicas: cfg.NATS.Replicas, Log: log,
	}
	log.Info().Int("products", len(cat.Products)).Msg("offers consuming")
	mux := http.NewServeMux()
	health.Register(mux, health.JetStream(deps.JS, []string{contracts.StreamLoan}, []string{contracts.BucketSearches}))
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return c.Run(gctx, deps.JS) })
	grp.Go(func() error { return health.Serve(gctx, cfg.HealthAddr, mux) })
	return grp.Wait()
}

type pricer struct {
	store   *kvstore.Store
	catalog *catalog.Catalog
	now     func() time.Time
}

// handle prices a scored search and finishes it. A search already done (the deadline
// passed first, or this is a redelivery) keeps what it has: the first finish wins.
func (p *pricer) handle(ctx context.Context, s *contracts.Scored) error {
	offers := pricing.Price(p.catalog, s)
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
