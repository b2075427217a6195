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
	"github.com/demobank/yacredits/pkg/document"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/services/offers/audit"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
	"github.com/demobank/yacredits/services/offers/pricing"
)

// instrumentation names this package in spans.
const instrumentation = "github.com/demobank/yacredits/services/offers"

// Config is what the offers service reads from its environment.
type Config struct {
	// CatalogFile (CATALOG_FILE) is the seed: the catalog written to the catalog bucket when
	// the bucket holds none (empty: the built-in demo catalog). Once the bucket has a
	// catalog, the service prices with the bucket's and follows its changes; change the
	// catalog with yactl catalog, not this file. The file is still read and validated at every
	// start, so a broken one stops the service when it is deployed.
	CatalogFile string
	// CeilingsFile (CEILINGS_FILE) is the seed of the ceiling table bucket, as CATALOG_FILE
	// is the catalog's (empty: the built-in table, services/offers/ceiling/default.json).
	CeilingsFile string
	// AuditRetention (AUDIT_RETENTION) is how long the audit trail keeps a decision.
	AuditRetention time.Duration
	// AuditPseudonymKey (AUDIT_PSEUDONYM_KEY) is the trail's own key: each record's phone
	// hash is kept as its HMAC under it (audit.Pseudonyms). Offers alone holds it.
	AuditPseudonymKey []byte
	// Concurrency (CONCURRENCY) is how many searches one replica prices at once.
	Concurrency int
	// MaxOffers (OFFERS_MAX) caps the offers in one answer, best first: a catalog of hundreds
	// of products must not make an answer (and its stored record) of hundreds of offers.
	MaxOffers int
	// HealthAddr (HEALTH_ADDR) serves /healthz and /readyz for the orchestrator; empty
	// serves nothing (the standalone binary, where the gateway's endpoints cover the process).
	HealthAddr string
	// Links seals every proposal link's reference (LINK_*); a key that seals is required.
	Links offerlink.Config
	NATS  config.NATS
	Log   telemetry.LogConfig
}

// LoadConfig reads and checks the variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{
		CatalogFile:       r.String("CATALOG_FILE", ""),
		CeilingsFile:      r.String("CEILINGS_FILE", ""),
		AuditRetention:    provision.ReadAuditRetention(r),
		AuditPseudonymKey: []byte(r.Secret("AUDIT_PSEUDONYM_KEY", "")),
		Concurrency:       r.Int("CONCURRENCY", 64, 1, 4096),
		MaxOffers:         r.Int("OFFERS_MAX", 10, 1, 100),
		HealthAddr:        r.Addr("HEALTH_ADDR", ""),
		Links:             offerlink.ReadConfig(r),
		NATS:              config.ReadNATS(r),
		Log:               telemetry.ReadLogConfig(r),
	}
	c.Links.RequireSealing(r)
	if len(c.AuditPseudonymKey) < audit.MinKeyBytes {
		r.Fail("AUDIT_PSEUDONYM_KEY", "required, at least %d bytes, not the phone-hash key (openssl rand -hex 32)", audit.MinKeyBytes)
	} else if err := phone.CheckKey(c.AuditPseudonymKey); err != nil && !config.AllLoopback(c.NATS.URL, c.HealthAddr) {
		r.Fail("AUDIT_PSEUDONYM_KEY", "refused beyond loopback (NATS_URL %s): %v", c.NATS.URL, err)
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
	seed, err := readSeed(cfg.CatalogFile, catalog.DemoJSON(), pricing.ParseCatalog, "catalog")
	if err != nil {
		return err // a broken deployment, which no retry heals
	}
	ceilingSeed, err := readSeed(cfg.CeilingsFile, ceiling.DefaultJSON(), ceiling.Parse, "ceiling table")
	if err != nil {
		return err
	}
	links, err := cfg.Links.Sealer()
	if err != nil {
		return err
	}
	pseudonyms, err := audit.NewPseudonyms(cfg.AuditPseudonymKey)
	if err != nil {
		return err
	}
	var (
		catalogs atomic.Pointer[document.Source[*catalog.Catalog]]
		ceilings atomic.Pointer[document.Source[*ceiling.Table]]
		consumer atomic.Pointer[bus.Consumer[contracts.Scored]]
		setupErr atomic.Pointer[error]
		loaded   = make(chan struct{})
	)
	checks := append(health.JetStream(deps.JS, []string{contracts.StreamLoan},
		[]string{contracts.BucketSearches, contracts.BucketCatalog, contracts.BucketCeilings}),
		provision.Probe(deps.JS, provision.Offers(provision.Settings{Replicas: cfg.NATS.Replicas, AuditRetention: cfg.AuditRetention})...),
		health.Check{Name: "catalog", Probe: func(context.Context) (string, error) {
			cs := catalogs.Load()
			if cs == nil {
				if err := setupErr.Load(); err != nil {
					return "", fmt.Errorf("no catalog in force yet: %w", *err)
				}
				return "", errors.New("no catalog in force yet")
			}
			cur := cs.Current()
			return fmt.Sprintf("revision %d in force, %d products", cur.Revision, len(cur.Value.Products)), nil
		}},
		health.Check{Name: "ceilings", Probe: func(context.Context) (string, error) {
			cs := ceilings.Load()
			if cs == nil {
				return "", errors.New("no ceiling table in force yet")
			}
			return describeCeilings(cs.Current(), now()), nil
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
	failed := func(err error) { setupErr.Store(&err) }
	// Health first: alive while waiting for the gateway's bucket, ready only after.
	grp.Go(func() error { return health.Serve(gctx, cfg.HealthAddr, ops) })
	grp.Go(func() error {
		cat := document.Follow(gctx, deps.JS, CatalogDocument, seed, log, failed)
		if cat == nil {
			return nil
		}
		ceil := document.Follow(gctx, deps.JS, CeilingDocument, ceilingSeed, log, failed)
		if ceil == nil {
			return nil
		}
		// A catalog and a ceiling table are each valid alone; together pricing narrows or
		// drops what the table forbids, and says so here, once per change, for the bank to
		// fix the catalog.
		audit := func() { warnAboveCeilings(log, cat.Current(), ceil.Current(), now(), cfg.Links.Lifetime) }
		cat.OnSwap(func(document.InForce[*catalog.Catalog]) { audit() })
		ceil.OnSwap(func(document.InForce[*ceiling.Table]) { audit() })
		audit()
		catalogs.Store(cat)
		ceilings.Store(ceil)
		close(loaded)
		g, c := errgroup.WithContext(gctx)
		g.Go(func() error { return cat.Run(c) })
		g.Go(func() error { return ceil.Run(c) })
		return g.Wait()
	})
	grp.Go(func() error {
		w := &audit.Writer{JS: deps.JS, Log: log, Pseudonyms: pseudonyms}
		if deps.Meter != nil {
			m := deps.Meter.Meter(instrumentation)
			batches, _ := m.Int64Counter("audit.batches", metric.WithDescription("Batches written to the audit trail"))
			records, _ := m.Int64Counter("audit.records", metric.WithDescription("Finished searches written to the audit trail"))
			w.Written = func(n int) {
				batches.Add(gctx, 1)
				records.Add(gctx, int64(n))
			}
		}
		return w.Run(gctx)
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
		p := &pricer{store: store, catalog: catalogs.Load().Current, ceilings: ceilings.Load().Current,
			links: links, linkLifetime: cfg.Links.Lifetime, now: now, maxOffers: cfg.MaxOffers, log: log}
		c := &bus.Consumer[contracts.Scored]{
			Name: contracts.ConsumerOffers, Subject: contracts.SubjectScored,
			Decode: contracts.DecodeScored, Handle: p.handle, OnDeadLetter: p.reject,
			Concurrency: cfg.Concurrency, Log: log,
			Tracer: deps.Tracer, Meter: deps.Meter,
		}
		consumer.Store(c)
		log.Info().Int("max_offers", cfg.MaxOffers).Msg("offers consuming")
		return c.Run(gctx, deps.JS)
	})
	return grp.Wait()
}

// describeCeilings is the readiness detail of the ceiling table: which quarter's values
// apply now, or that only the absolute ceiling does.
func describeCeilings(t document.InForce[*ceiling.Table], now time.Time) string {
	if q := t.Value.Quarter(now); q != nil {
		return fmt.Sprintf("revision %d in force, %s values apply (%s)", t.Revision, q.Name, q.Source)
	}
	return fmt.Sprintf("revision %d in force, no values for this quarter: only the absolute %s %% ceiling applies (put the Bank of Russia's with yactl ceilings put)",
		t.Revision, ceiling.Absolute)
}

// warnAboveCeilings logs the products of the catalog in force that the ceilings in force
// narrow or drop, and a table without this quarter's values.
func warnAboveCeilings(log zerolog.Logger, c document.InForce[*catalog.Catalog], t document.InForce[*ceiling.Table], now time.Time, window time.Duration) {
	if t.Value.Quarter(now) == nil {
		log.Warn().Uint64("ceilings_revision", t.Revision).
			Msgf("the ceiling table has no values for this quarter: offers are held to the absolute %s %% alone", ceiling.Absolute)
	}
	if problems := pricing.PricingProblems(c.Value, t.Value.Between(now, now.Add(window))); len(problems) > 0 {
		log.Warn().Uint64("catalog_revision", c.Revision).Uint64("ceilings_revision", t.Revision).Strs("problems", problems).
			Msg("catalog products above their category's ПСК ceiling: pricing offers them only within it, or not at all")
	}
}

type pricer struct {
	store *search.Store
	// catalog and ceilings are the documents in force, each read once per search.
	catalog      func() document.InForce[*catalog.Catalog]
	ceilings     func() document.InForce[*ceiling.Table]
	links        *offerlink.Sealer
	linkLifetime time.Duration
	now          func() time.Time
	maxOffers    int
	log          zerolog.Logger
}

// handle prices a scored search and finishes it. A search already done (the deadline
// passed first, or this is a redelivery) keeps what it has: the first finish wins.
func (p *pricer) handle(ctx context.Context, s *contracts.Scored) error {
	// The span says which search and how long, never the client's decision: not its verdict,
	// grade or number of offers (docs/security.md, "Logs and traces").
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation).Start(ctx, "price offers",
		trace.WithAttributes(
			attribute.String("search_id", s.Request.SearchID),
			attribute.String("search.product_type", string(s.Request.ProductType))))
	now := p.now() // one instant: the ceilings' window, the links' validity and the record
	d := Price(p.catalog(), p.ceilings(), s, now, p.linkLifetime, p.maxOffers)
	offers, refs, err := p.seal(s, d.Quotes, now, d.Basis.LinksUntil)
	if err != nil {
		span.End()
		return bus.Permanent(err) // the catalog's validation bounds links, so this is a bug
	}
	span.End()
	data, err := contracts.EncodeOffers(offers)
	if err != nil {
		return bus.Permanent(fmt.Errorf("encode offers: %w", err))
	}
	_, err = p.store.Finish(ctx, s.Request, telemetry.Traceparent(ctx), data, refs, d.Reasons, d.Basis, now)
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

// Priced is a search priced, before its links are sealed: what the offers service answers
// and records, and what a replay recomputes.
type Priced struct {
	Quotes  []pricing.Quoted // the offers, best first, unsigned
	Reasons []string         // the record's reason codes: scoring's, then pricing's
	Basis   *contracts.Basis // what the decision was made from
}

// Price prices a scored search at now with the catalog and ceiling table given: the
// offers, capped at maxOffers (best first), the reasons and the basis to record. It is the
// whole of the offers service's decision, without I/O, so that a replay runs exactly it.
func Price(cat document.InForce[*catalog.Catalog], ceil document.InForce[*ceiling.Table], s *contracts.Scored, now time.Time, linkLifetime time.Duration, maxOffers int) Priced {
	until := now.Add(linkLifetime) // no link outlives it, nor the pre-approval
	if s.ValidUntil != nil && s.ValidUntil.Before(until) {
		until = *s.ValidUntil
	}
	lim := ceil.Value.Between(now, until)
	r := pricing.Quotes(cat.Value, s, lim)
	basis := &contracts.Basis{
		ScoredAt: s.ScoredAt, Verdict: s.Verdict, Kind: s.Kind, Grade: s.Grade, Amount: s.Amount, Term: s.Term,
		ValidUntil: s.ValidUntil, Catalog: cat.Revision, Ceilings: ceil.Revision, Quarters: lim.Quarters(),
		Pricing: contracts.PricingVersion, MaxOffers: maxOffers, PricedAt: now.UTC(), LinksUntil: until.UTC(), Trail: r.Trail,
	}
	if s.Basis != nil {
		basis.ScoreBasis = *s.Basis
	}
	quotes, dropped := r.Quotes, r.Reasons
	if len(quotes) > maxOffers {
		for _, q := range quotes[maxOffers:] {
			basis.Trail[q.ProductID] = pricing.DroppedOffersMax
		}
		quotes = quotes[:maxOffers] // best first: the cut keeps the best
	}
	for _, q := range quotes {
		basis.Offered = append(basis.Offered, q.ProductID)
	}
	if s.ValidUntil != nil && !s.ValidUntil.After(now) {
		for _, q := range quotes {
			basis.Trail[q.ProductID] = pricing.DroppedLapsed
		}
		quotes, dropped, basis.Offered = nil, append(dropped, contracts.ReasonPreapprovalLapsed), nil
	}
	reasons := append(slices.Clone(s.Reasons), dropped...)
	if s.Verdict == contracts.Approved && len(quotes) == 0 {
		reasons = append(reasons, contracts.ReasonNoOffers)
	}
	return Priced{Quotes: quotes, Reasons: reasons, Basis: basis}
}

// seal makes every offer's reference, which says which offer of which search its links are
// (so that the bank's site can trust a click and a conversion be traced to the search), and
// puts its place in the offer's links: the record stores each reference once.
func (p *pricer) seal(s *contracts.Scored, quotes []pricing.Quoted, now, until time.Time) ([]contracts.Offer, []string, error) {
	if len(quotes) == 0 {
		return nil, nil, nil
	}
	offers, refs := make([]contracts.Offer, len(quotes)), make([]string, len(quotes))
	for i, q := range quotes {
		o := q.Offer
		ref, err := p.links.Seal(&o, offerlink.ForOffer(s.Request.AsSent(), q.ProductID, o, now, until))
		if err != nil {
			return nil, nil, fmt.Errorf("offer %s: %w", q.ProductID, err)
		}
		offers[i], refs[i] = o, ref
	}
	return offers, refs, nil
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
