// Package search owns the life of a search record in the searches bucket, the system of
// record. A record is created pending (by the gateway, when a search outlives its sync
// budget) or created done (by the offers service, the common path: one durable write per
// search), and a pending one is finished once: with offers, at its deadline, or rejected
// after a dead letter. Every transition goes through one compare-and-set funnel, which
// also counts the search's ending and writes its one log line; nothing else writes a
// record, so concurrent writers (two gateways' sweepers, an offers replica, a redelivered
// message) can never overwrite each other or move a search backwards.
package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// ErrNotFound is returned for a search the bucket does not hold (never seen, or expired).
var ErrNotFound = errors.New("search not found")

// ErrExists is returned by CreatePending when the search id is taken.
var ErrExists = errors.New("search already exists")

// ErrConflict is returned when the id is held by a different request (spec §5: the stored
// search stands).
var ErrConflict = errors.New("search id holds a different request")

// errNotOverdue is FinishAtDeadline's refusal of a search whose deadline has not passed.
var errNotOverdue = errors.New("search is not overdue")

// Timeout bounds each call on the bucket, whatever deadline its caller has: a broker that
// does not answer costs a caller this long, and never blocks it.
const Timeout = 3 * time.Second

// maxAttempts bounds compare-and-set retries. Each retry means another writer changed the
// record in between; a handful of writers touch one search, so a long run of conflicts
// means something is wrong rather than busy.
const maxAttempts = 16

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
		// Each write, once stored, to the gateway's watch: no consumer needed (Watch).
		RePublish: &jetstream.RePublish{Source: keyPrefix + ">", Destination: contracts.SubjectSearchWritten + ".>"},
	}
}

// Options are what a Store reports to.
type Options struct {
	Log   zerolog.Logger       // the ending of each search, one line
	Meter metric.MeterProvider // searches by decision, deadline endings, time to done (nil: none)
}

// Store reads search records and makes their transitions.
type Store struct {
	nc      *nats.Conn // for Watch
	kv      jetstream.KeyValue
	log     zerolog.Logger
	metrics *endings
}

func newStore(nc *nats.Conn, kv jetstream.KeyValue, o Options) (*Store, error) {
	m, err := newEndings(o.Meter)
	if err != nil {
		return nil, err
	}
	return &Store{nc: nc, kv: kv, log: o.Log, metrics: m}, nil
}

// Bind binds to the bucket, as the provisioner made it (reads from the stream's leader: a
// lagging replica would show a done search as pending again, which the spec forbids).
func Bind(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	kv, err := bus.BindLeaderRead(ctx, js, contracts.BucketSearches)
	if err != nil {
		return nil, err
	}
	return newStore(js.Conn(), kv, o)
}

// Open is Bind, waiting for the bucket to be provisioned, so that start-up order does not
// matter.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	for {
		s, err := Bind(ctx, js, o)
		if err == nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open bucket %s: waiting for it to be provisioned: %w (%v)", contracts.BucketSearches, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Get returns the search and its revision, its basis included.
func (s *Store) Get(ctx context.Context, id string) (*contracts.Search, uint64, error) {
	return s.get(ctx, id, contracts.DecodeSearch)
}

// Answer returns the search and its revision as an answer needs it: without the decision's
// basis, which it leaves undecoded (contracts.DecodeSearchAnswer). The gateway reads records
// only this way and through Watch.
func (s *Store) Answer(ctx context.Context, id string) (*contracts.Search, uint64, error) {
	return s.get(ctx, id, contracts.DecodeSearchAnswer)
}

func (s *Store) get(ctx context.Context, id string, decode func(string, []byte) (*contracts.Search, error)) (_ *contracts.Search, _ uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	ctx, end := span(ctx, "get", id)
	defer func() {
		if errors.Is(err, ErrNotFound) {
			end(nil) // an answer, not a failure
			return
		}
		end(err)
	}()
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get search %s: %w", id, err)
	}
	rec, err := decode(id, e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("get search %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// Settled reads a search whose id a create has just found taken, as Answer does. On a
// replicated bucket the leader refuses a create while another write of the key is still
// being replicated, before a read can show it; so a missing record is read again for a
// moment before it is reported missing.
func (s *Store) Settled(ctx context.Context, id string) (*contracts.Search, uint64, error) {
	for attempt := 0; ; attempt++ {
		rec, rev, err := s.Answer(ctx, id)
		if !errors.Is(err, ErrNotFound) || attempt == 8 {
			return rec, rev, err
		}
		if err := pause(ctx, attempt); err != nil {
			return nil, 0, err
		}
	}
}

// CreatePending stores a pending record, atomically: if the id is taken it returns ErrExists
// and changes nothing. It returns once the record is stored.
func (s *Store) CreatePending(ctx context.Context, rec *contracts.Search) (uint64, error) {
	rev, err := s.create(ctx, rec)
	if err != nil {
		return 0, err
	}
	return rev, nil
}

// Finish records the offers service's result for req (offers as the answer's data array:
// contracts.EncodeOffers, and refs the references of their links; none is a rejection). With no record it creates the done one:
// the common path, one durable write. With a pending record of the same request it
// finishes that one, under the deadline rule (contracts.Search.FinishOffered: never with
// offers later than contracts.Allowance after the deadline). A search already done keeps what
// it has (contracts.ErrAlreadyDone, with the stored record); an id held by another request
// stays untouched (ErrConflict). basis, what the decision was made from, is kept with it.
//
// A search with no record was never answered 200 (a pending record backs every 200 that is not
// done), so its deadline promised nothing yet: it is created as decided, however late, and a
// retry of the POST that could not be accepted is answered from it.
func (s *Store) Finish(ctx context.Context, req contracts.LoanRequested, traceparent string, offers json.RawMessage, refs, reasons []string, basis *contracts.Basis, now time.Time) (*contracts.Search, error) {
	done, err := contracts.NewSearch(req, traceparent).Finish(offers, reasons, now)
	if err != nil {
		return nil, err
	}
	if err := done.SetRefs(refs); err != nil {
		return nil, err
	}
	done.Basis = basis
	return s.transition(ctx, req.SearchID, "offers", done, func(cur *contracts.Search) (*contracts.Search, error) {
		if !cur.Request.SameAs(req) {
			return nil, ErrConflict
		}
		return cur.FinishOffered(offers, refs, reasons, basis, now)
	})
}

// FinishAtDeadline finishes a search past its deadline as rejected, once. It returns the
// record as it stands: done by this call, done already by another writer, or still
// pending when its deadline has not passed (then with an error).
func (s *Store) FinishAtDeadline(ctx context.Context, id string, now time.Time) (*contracts.Search, error) {
	return s.transition(ctx, id, "deadline", nil, func(cur *contracts.Search) (*contracts.Search, error) {
		if cur.DoneAt != nil {
			return nil, contracts.ErrAlreadyDone
		}
		if !cur.Overdue(now) {
			return nil, errNotOverdue
		}
		return cur.Finish(nil, []string{contracts.ReasonDeadline}, now)
	})
}

// Reject finishes the search of a dead-lettered message as rejected with reason. req is the
// message's request when it could be read: then a search with no record yet is created
// rejected (its POST, still waiting, answers at once); without it only a pending record
// can be finished.
func (s *Store) Reject(ctx context.Context, id string, req *contracts.LoanRequested, traceparent, reason string, now time.Time) (*contracts.Search, error) {
	var create *contracts.Search
	if req != nil {
		var err error
		if create, err = contracts.NewSearch(*req, traceparent).Finish(nil, []string{reason}, now); err != nil {
			return nil, err
		}
	}
	return s.transition(ctx, id, "dead_letter", create, func(cur *contracts.Search) (*contracts.Search, error) {
		if req != nil && !cur.Request.SameAs(*req) {
			return nil, ErrConflict
		}
		return cur.Finish(nil, []string{reason}, now)
	})
}

// transition is the one funnel every ending goes through: an atomic create of the done
// record when create is given, else (or when the id is taken) compare-and-set of fn's
// result over the stored record. fn refuses with an error to leave the record alone; a
// refusal with contracts.ErrAlreadyDone returns the stored record with it.
func (s *Store) transition(ctx context.Context, id, by string, create *contracts.Search, fn func(*contracts.Search) (*contracts.Search, error)) (*contracts.Search, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if create != nil {
		_, err := s.create(ctx, create)
		if err == nil {
			s.ended(ctx, create, by)
			return create, nil
		}
		if !errors.Is(err, ErrExists) {
			return nil, err
		}
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		cur, rev, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) && create != nil {
			// The create lost to a write not yet readable: read again in a moment.
			if err := pause(ctx, attempt); err != nil {
				return nil, fmt.Errorf("finish search %s: %w", id, err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if errors.Is(err, contracts.ErrAlreadyDone) {
			return cur, fmt.Errorf("finish search %s: %w", id, err)
		}
		if err != nil {
			return cur, fmt.Errorf("finish search %s: %w", id, err)
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
				return nil, fmt.Errorf("finish search %s: %w", id, err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("finish search %s: %w", id, err)
		}
		s.ended(ctx, next, by)
		return next, nil
	}
	return nil, fmt.Errorf("finish search %s: %d conflicting writes in a row", id, maxAttempts)
}

func (s *Store) create(ctx context.Context, rec *contracts.Search) (rev uint64, err error) {
	id := rec.Request.SearchID
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	ctx, end := span(ctx, "create", id)
	defer func() {
		if errors.Is(err, ErrExists) {
			end(nil) // a retry or a race, not a failure
			return
		}
		end(err)
	}()
	data, err := contracts.EncodeSearch(rec)
	if err != nil {
		return 0, fmt.Errorf("encode search %s: %w", id, err)
	}
	region := telemetry.Region(ctx, telemetry.RegionCreate)
	rev, err = s.kv.Create(ctx, id, data)
	region.End()
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create search %s: %w", id, err)
	}
	return rev, nil
}

// ended records a search that just became done: its metrics (counted by decision, no
// client's) and its one log line, which says which search ended and how long it took but
// not the client's decision (docs/security.md, "Logs and traces").
func (s *Store) ended(ctx context.Context, rec *contracts.Search, by string) {
	s.metrics.record(ctx, rec)
	e := s.log.Info().Ctx(ctx).Str("search_id", rec.Request.SearchID).Str("product_type", string(rec.Request.ProductType)).
		Str("phone", rec.Request.PhoneMasked)
	if rec.Request.Test {
		e = e.Bool("test", true) // a test phone's: not a client's
	}
	e.Str("by", by).Dur("took", rec.DoneAt.Sub(rec.Request.RequestedAt)).Msg("search done")
}

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

// span starts a client span for one bucket operation on the pipeline of ctx's span: a
// record read or written while handling a search shows in that search's trace.
func span(ctx context.Context, op, id string) (context.Context, func(error)) {
	ctx, sp := trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation).
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

const instrumentation = "github.com/demobank/yacredits/pkg/search"
