package offers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/pricing"
)

// catalogHistory is how many revisions of the catalog the bucket keeps: enough to read the
// last few back and put one again (a rollback), and for a starting replica to pass over a
// few refused revisions to the newest valid one.
const catalogHistory = 10

// CatalogBucket is the configuration of the catalog bucket: on disk, because the catalog is
// the bank's decision and must outlive a broker restart, with a short history.
func CatalogBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      contracts.BucketCatalog,
		Description: "the offers service's product catalog under key " + contracts.CatalogKey,
		History:     catalogHistory,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// EnsureCatalogBucket creates the catalog bucket or brings its configuration up to date.
// The offers service and catalogctl both call it, so neither has to come first.
func EnsureCatalogBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	return bus.EnsureKeyValue(ctx, js, CatalogBucket(replicas))
}

// readSeed returns the catalog file at path, or the demo catalog when path is empty, after
// checking it. It is read at every start, although it is written only to an empty bucket,
// so that a broken CATALOG_FILE is found when it is deployed, not on the day it is needed.
func readSeed(path string) ([]byte, error) {
	if path == "" {
		return catalog.DemoJSON(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seed catalog: %w", err)
	}
	if _, err := pricing.ParseCatalog(data); err != nil {
		return nil, fmt.Errorf("seed catalog %s: %w", path, err)
	}
	return data, nil
}

// inForce is the catalog being priced with and the bucket revision it came from.
type inForce struct {
	catalog  *catalog.Catalog
	revision uint64
}

// catalogSource keeps the catalog in force and follows the catalog bucket. Pricing reads it
// with one atomic load, so a search is priced wholly with the old catalog or wholly with
// the new one. A revision that fails to parse or validate is refused: logged with every
// problem, while the catalog in force stays.
type catalogSource struct {
	js       jetstream.JetStream
	replicas int
	seed     []byte
	log      zerolog.Logger

	cur atomic.Pointer[inForce]
	// kv and seen belong to start and then to run's goroutine alone.
	kv   jetstream.KeyValue
	seen uint64 // the newest revision looked at, valid or not
}

// startCatalogSource prepares the bucket and puts its newest valid catalog in force.
func startCatalogSource(ctx context.Context, js jetstream.JetStream, replicas int, seed []byte, log zerolog.Logger) (*catalogSource, error) {
	s := &catalogSource{js: js, replicas: replicas, seed: seed, log: log}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// current is the catalog to price with.
func (s *catalogSource) current() *catalog.Catalog { return s.cur.Load().catalog }

// prepare ensures the bucket and writes the seed if the bucket holds no catalog. The seed
// goes in with Create, which only succeeds while the key is empty (or deleted): replicas
// starting together write it once between them, and a catalog someone put is never
// replaced.
func (s *catalogSource) prepare(ctx context.Context) error {
	kv, err := EnsureCatalogBucket(ctx, s.js, s.replicas)
	if err != nil {
		return err
	}
	rev, err := bus.Declare(ctx, func(ctx context.Context) (uint64, error) { return kv.Create(ctx, contracts.CatalogKey, s.seed) })
	switch {
	case err == nil:
		s.log.Info().Uint64("revision", rev).Msg("catalog bucket held no catalog: seeded it")
	case !writtenMeanwhile(err):
		return fmt.Errorf("seed bucket %s: %w", contracts.BucketCatalog, err)
	}
	s.kv = kv
	return nil
}

// writtenMeanwhile reports whether a Create failed because the key holds a value: the
// catalog was there, or another replica's seed got in first. Create returns ErrKeyExists
// for a key that has a value, but for a deleted key it retries as an update, whose lost race
// comes back as a bare wrong-last-sequence error (code 10164 on a replicated bucket).
func writtenMeanwhile(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// load puts in force the newest valid catalog since the key was last deleted. Newer
// revisions that do not validate are passed over, as the running replicas refused them:
// a restarted replica prices like the others.
func (s *catalogSource) load(ctx context.Context) error {
	// A bounded read: its consumer's create can go unanswered on a cluster just forming.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entries, err := s.kv.History(hctx, contracts.CatalogKey)
	if err != nil {
		return fmt.Errorf("read bucket %s: %w", contracts.BucketCatalog, err)
	}
	s.seen = entries[len(entries)-1].Revision()
	type refusal struct {
		revision uint64
		err      error
	}
	var refused []refusal
	for i := len(entries) - 1; i >= 0 && entries[i].Operation() == jetstream.KeyValuePut; i-- {
		e := entries[i]
		c, err := pricing.ParseCatalog(e.Value())
		if err != nil {
			refused = append(refused, refusal{e.Revision(), err})
			continue
		}
		for _, r := range refused {
			s.refuse(r.revision, r.err)
		}
		s.swap(c, e.Revision())
		return nil
	}
	if len(refused) == 0 {
		return fmt.Errorf("bucket %s: the catalog was deleted while starting", contracts.BucketCatalog)
	}
	return fmt.Errorf("bucket %s holds no valid catalog (put one with catalogctl): revision %d: %w",
		contracts.BucketCatalog, refused[0].revision, refused[0].err)
}

// run follows the bucket until ctx ends. A watch that breaks (the broker gone for longer
// than the client's own recovery) is started again as the gateway's tracker does, after
// preparing the bucket again in case the broker lost it; the catalog in force keeps
// pricing meanwhile.
func (s *catalogSource) run(ctx context.Context) error {
	for restart := false; ; restart = true {
		err := s.watch(ctx, restart)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn().Err(err).Msg("watch of the catalog bucket interrupted; starting it again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (s *catalogSource) watch(ctx context.Context, restart bool) error {
	if restart {
		if err := s.prepare(ctx); err != nil {
			return err
		}
		// A bucket made anew (the broker lost its store) numbers from 1 again: read it all.
		if e, err := s.kv.Get(ctx, contracts.CatalogKey); err == nil && e.Revision() < s.seen {
			s.seen = 0
		}
	}
	// Every revision after the last one looked at, in order: the newest valid one wins, as
	// it would have had the watch never stopped.
	w, err := s.kv.Watch(ctx, contracts.CatalogKey, jetstream.ResumeFromRevision(s.seen+1))
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", contracts.BucketCatalog, err)
	}
	defer func() { _ = w.Stop() }()
	check := time.NewTicker(watchCheckInterval)
	defer check.Stop()
	var behind uint64 // a revision the last check found and the watch had not delivered
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch of the catalog bucket ended")
			}
			if e == nil || e.Revision() <= s.seen { // nil marks the end of the replay
				continue
			}
			s.seen = e.Revision()
			s.apply(e)
		case <-check.C:
			if behind > s.seen {
				return fmt.Errorf("watch of the catalog bucket stalled: revision %d not delivered after %s", behind, watchCheckInterval)
			}
			behind = s.latest(ctx)
		}
	}
}

// watchCheckInterval is how often the watch is checked against the bucket. A watch can
// stall without ending: after a broker restart the client notices its lost watch only by
// missing heartbeats, some ten seconds later. Comparing with the bucket's latest revision
// each second, and starting the watch again when a revision stays undelivered for a whole
// interval, bounds that delay to a few seconds at the cost of one small request a second.
const watchCheckInterval = time.Second

// latest is the bucket's latest catalog revision, or 0 when it cannot be read now (the
// broker away, the key deleted): the next check tries again.
func (s *catalogSource) latest(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, watchCheckInterval)
	defer cancel()
	e, err := s.kv.Get(ctx, contracts.CatalogKey)
	if err != nil {
		return 0
	}
	return e.Revision()
}

func (s *catalogSource) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.log.Warn().Uint64("revision", e.Revision()).Str("operation", e.Operation().String()).
			Uint64("in_force_revision", s.cur.Load().revision).
			Msg("catalog removed from the bucket; the one in force stays until one is put (a service or watch starting meanwhile seeds the bucket again)")
		return
	}
	c, err := pricing.ParseCatalog(e.Value())
	if err != nil {
		s.refuse(e.Revision(), err)
		return
	}
	s.swap(c, e.Revision())
}

func (s *catalogSource) swap(c *catalog.Catalog, revision uint64) {
	prev := s.cur.Swap(&inForce{catalog: c, revision: revision})
	ev := s.log.Info().Uint64("revision", revision).Int("products", len(c.Products))
	if prev != nil {
		ev = ev.Uint64("previous_revision", prev.revision)
	}
	ev.Msg("catalog in force")
}

// refuse logs a revision that is not a valid catalog with every one of its problems.
func (s *catalogSource) refuse(revision uint64, err error) {
	problems := []string{err.Error()} // a file that does not decode stops at its first problem
	var invalid *catalog.ValidationError
	if errors.As(err, &invalid) {
		problems = invalid.Problems
	}
	ev := s.log.Error().Uint64("revision", revision).Strs("problems", problems)
	if cur := s.cur.Load(); cur != nil {
		ev = ev.Uint64("in_force_revision", cur.revision)
	}
	ev.Msg("catalog refused; the one in force stays")
}
