// Package kvstore keeps search records in the JetStream key-value bucket named by
// contracts.BucketSearches. The bucket is the system of record: a search exists once its
// record is stored (synced to disk), and it changes only through Update, a compare-and-set
// on the record's revision, so that concurrent writers (the offers service, the gateway's
// deadline sweeper, a redelivered message) can never overwrite each other or move a search
// backwards.
package kvstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/contracts"
)

// ErrNotFound is returned for a search the bucket does not hold (never seen, or expired).
var ErrNotFound = errors.New("search not found")

// ErrExists is returned by Create when the search id is taken.
var ErrExists = errors.New("search already exists")

// maxUpdateAttempts bounds compare-and-set retries. Each retry means another writer
// changed the record in between; a handful of writers touch one search, so a long run of
// conflicts means something is wrong rather than busy.
const maxUpdateAttempts = 16

func pause(ctx context.Context, attempt int) error {
	d := time.Millisecond << min(attempt, 6)
	d += time.Duration(rand.Int64N(int64(d)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// BucketConfig is the searches bucket: on disk, one revision per key (older ones are of no
// use to anyone and cost space), records expiring retention after their last write.
func BucketConfig(retention time.Duration, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      contracts.BucketSearches,
		Description: "search records, keyed by lowercase search_id",
		History:     1,
		TTL:         retention,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Store reads and writes search records.
type Store struct {
	kv      jetstream.KeyValue
	metrics *finishMetrics // nil: not measured
}

// Ensure creates or updates the bucket and returns a Store over it. The gateway owns the
// bucket (its retention is the gateway's setting) and calls this at start-up.
func Ensure(ctx context.Context, js jetstream.JetStream, retention time.Duration, replicas int) (*Store, error) {
	// Reads must come from the stream leader. A replicated bucket lets any replica answer
	// a "direct get", and a lagging one would show a done search as pending again (the spec
	// forbids that) and feed compare-and-set a stale revision over and over. The client
	// decides at bind time, from the stream's AllowDirect, which the KV API always turns on;
	// so the bucket is created through it once, and from then on only its stream's
	// settings are updated, keeping AllowDirect off.
	name := "KV_" + contracts.BucketSearches
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateKeyValue(ctx, BucketConfig(retention, replicas)); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, fmt.Errorf("create bucket %s: %w", contracts.BucketSearches, err)
		}
		stream, err = js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", contracts.BucketSearches, err)
	}
	cfg := stream.CachedInfo().Config
	want := cfg
	want.AllowDirect, want.MaxAge, want.Replicas = false, retention, replicas
	if !reflect.DeepEqual(cfg, want) {
		if _, err := js.UpdateStream(ctx, want); err != nil {
			return nil, fmt.Errorf("ensure bucket %s: %w", contracts.BucketSearches, err)
		}
	}
	kv, err := js.KeyValue(ctx, contracts.BucketSearches)
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", contracts.BucketSearches, err)
	}
	return &Store{kv: kv}, nil
}

// Open binds to the bucket, waiting for its owner to create it if it does not exist yet;
// the other services use this so that start-up order does not matter.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	for {
		// Bind only once the owner has switched reads to the leader (see Ensure): a handle
		// bound before would keep asking replicas that no longer answer.
		stream, err := js.Stream(ctx, "KV_"+contracts.BucketSearches)
		if err == nil && !stream.CachedInfo().Config.AllowDirect {
			kv, err := js.KeyValue(ctx, contracts.BucketSearches)
			if err != nil {
				return nil, fmt.Errorf("open bucket %s: %w", contracts.BucketSearches, err)
			}
			return &Store{kv: kv}, nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("open bucket %s: %w", contracts.BucketSearches, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open bucket %s: waiting for the gateway to create it: %w", contracts.BucketSearches, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// KeyValue exposes the bucket for watching.
func (s *Store) KeyValue() jetstream.KeyValue { return s.kv }

// Create stores a new search, atomically: if the id is taken it returns ErrExists and
// changes nothing. It returns once the record is stored.
func (s *Store) Create(ctx context.Context, search *contracts.Search) (rev uint64, err error) {
	ctx, end := span(ctx, "create", search.Request.SearchID)
	defer func() {
		if errors.Is(err, ErrExists) {
			end(nil) // a retry, not a failure
			return
		}
		end(err)
	}()
	data, err := contracts.EncodeSearch(search)
	if err != nil {
		return 0, fmt.Errorf("encode search %s: %w", search.Request.SearchID, err)
	}
	rev, err = s.kv.Create(ctx, search.Request.SearchID, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create search %s: %w", search.Request.SearchID, err)
	}
	return rev, nil
}

// Get returns the search and its revision.
func (s *Store) Get(ctx context.Context, id string) (_ *contracts.Search, _ uint64, err error) {
	ctx, end := span(ctx, "get", id)
	defer func() {
		if errors.Is(err, ErrNotFound) {
			end(nil) // an answer, not a failure
			return
		}
		end(err)
	}()
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get search %s: %w", id, err)
	}
	search, err := contracts.DecodeSearch(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("get search %s: %w", id, err)
	}
	return search, e.Revision(), nil
}

// Update applies fn to the current record and stores the result if nobody changed the
// record in between, re-reading and re-applying fn when somebody did. fn returns the new
// record, or an error to leave the record alone (that error is returned, wrapped).
func (s *Store) Update(ctx context.Context, id string, fn func(*contracts.Search) (*contracts.Search, error)) (*contracts.Search, error) {
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		cur, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, fmt.Errorf("update search %s: %w", id, err)
		}
		data, err := contracts.EncodeSearch(next)
		if err != nil {
			return nil, fmt.Errorf("encode search %s: %w", id, err)
		}
		uctx, end := span(ctx, "update", id)
		_, err = s.kv.Update(uctx, id, data, rev)
		end(err)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// On a replicated bucket the leader also refuses a write while another one for
			// the same key is still being replicated, before a read can show it: give that
			// write a moment (1 ms, doubling, jittered) instead of spinning on the old value.
			if err := pause(ctx, attempt); err != nil {
				return nil, fmt.Errorf("update search %s: %w", id, err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update search %s: %w", id, err)
		}
		return next, nil
	}
	return nil, fmt.Errorf("update search %s: %d conflicting writes in a row", id, maxUpdateAttempts)
}

// Finish marks the search done with offers (none: rejected). If the search is already done
// it returns contracts.ErrAlreadyDone (wrapped) and the stored record is untouched: the
// first finish wins.
func (s *Store) Finish(ctx context.Context, id string, offers []contracts.Offer, reasons []string, now time.Time) (*contracts.Search, error) {
	done, err := s.Update(ctx, id, func(cur *contracts.Search) (*contracts.Search, error) {
		return cur.Finish(offers, reasons, now)
	})
	if err == nil {
		s.metrics.record(ctx, done)
	}
	return done, err
}

// span starts a client span for one bucket operation on the pipeline of ctx's span: a
// record read or written while handling a search shows in that search's trace.
func span(ctx context.Context, op, id string) (context.Context, func(error)) {
	ctx, sp := trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/demobank/yacredits/pkg/kvstore").
		Start(ctx, "kv "+op+" "+contracts.BucketSearches, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("db.system.name", "nats"),
				attribute.String("db.operation.name", op),
				attribute.String("db.collection.name", contracts.BucketSearches),
				attribute.String("search_id", id),
			))
	return ctx, func(err error) {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, op+" failed")
		}
		sp.End()
	}
}
