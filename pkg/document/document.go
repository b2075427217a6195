// Package document keeps a versioned document of the bank's (the product catalog, the
// credit policy, the ПСК ceiling table) in a JetStream key-value bucket and the newest
// valid revision of it in force in a service. A revision that fails to parse or validate is
// refused: logged with every problem, while the one in force stays. The bucket keeps the
// last History revisions, so that one can be read back, put again (a rollback) or used to
// replay a past decision; every decision records the revision it was made with.
package document

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/provision"
)

// History is how many revisions a bucket keeps (package provision).
const History = provision.DocumentHistory

// Spec describes one document.
type Spec[T any] struct {
	Bucket, Key string
	Name        string // for people: "catalog", "policy", "ceiling table"
	// Parse decodes and validates a revision; an error refuses it.
	Parse func([]byte) (T, error)
	// Problems lists the problems in Parse's error, one per line of the log (nil: the
	// error's text).
	Problems func(error) []string
	// Describe, if set, adds what a revision put in force holds to its log line.
	Describe func(*zerolog.Event, T) *zerolog.Event
}

// Bind binds to the bucket, as the provisioner made it (package provision).
func (s Spec[T]) Bind(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, s.Bucket) })
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s is missing: %w", s.Bucket, bus.ErrNotProvisioned)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.Bucket, err)
	}
	return kv, nil
}

// Revision reads one revision of the document, still within the bucket's history, and
// parses it; revision 0 is the latest.
func (s Spec[T]) Revision(ctx context.Context, kv jetstream.KeyValue, revision uint64) (T, jetstream.KeyValueEntry, error) {
	var zero T
	var (
		e   jetstream.KeyValueEntry
		err error
	)
	if revision == 0 {
		e, err = kv.Get(ctx, s.Key)
	} else {
		e, err = kv.GetRevision(ctx, s.Key, revision)
	}
	if err != nil {
		return zero, nil, fmt.Errorf("read %s revision %d from bucket %s: %w", s.Name, revision, s.Bucket, err)
	}
	v, err := s.Parse(e.Value())
	if err != nil {
		return zero, e, fmt.Errorf("%s revision %d: %w", s.Name, e.Revision(), err)
	}
	return v, e, nil
}

// ErrNone is Fetch's answer when the bucket, the key or the revision does not exist (any
// more: a revision leaves the history after History newer ones).
var ErrNone = errors.New("no such document")

// Fetch opens the bucket and reads one revision of the document (0: the latest), for a
// tool: an operator's check against the documents in force, or the replay of a past
// decision.
func (s Spec[T]) Fetch(ctx context.Context, js jetstream.JetStream, revision uint64) (T, error) {
	var zero T
	kv, err := js.KeyValue(ctx, s.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return zero, fmt.Errorf("%w: bucket %s", ErrNone, s.Bucket)
	}
	if err != nil {
		return zero, fmt.Errorf("open bucket %s: %w", s.Bucket, err)
	}
	v, _, err := s.Revision(ctx, kv, revision)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return zero, fmt.Errorf("%w: %s revision %d is not in bucket %s (the last %d are kept)", ErrNone, s.Name, revision, s.Bucket, History)
	}
	return v, err
}

// InForce is a document being used and the bucket revision it came from.
type InForce[T any] struct {
	Value    T
	Revision uint64
}

// Source keeps the document in force and follows the bucket. Readers take it with one
// atomic load, so a search is decided wholly with the old revision or wholly with the new.
type Source[T any] struct {
	spec Spec[T]
	js   jetstream.JetStream
	seed []byte
	log  zerolog.Logger
	// OnSwap, if set, is called with each revision put in force (after the first).
	onSwap func(InForce[T])

	cur atomic.Pointer[InForce[T]]
	// kv and seen belong to Start and then to Run's goroutine alone.
	kv   jetstream.KeyValue
	seen uint64 // the newest revision looked at, valid or not
}

// Start binds to the bucket, seeding it with seed when it holds no document, and puts its
// newest valid revision in force.
func Start[T any](ctx context.Context, js jetstream.JetStream, spec Spec[T], seed []byte, log zerolog.Logger) (*Source[T], error) {
	s := &Source[T]{spec: spec, js: js, seed: seed, log: log.With().Str("document", spec.Name).Logger()}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Current is the document in force and its revision.
func (s *Source[T]) Current() InForce[T] { return *s.cur.Load() }

// prepare binds to the bucket and writes the seed if the bucket holds no document. The seed
// goes in with Create, which only succeeds while the key is empty (or deleted): replicas
// starting together write it once between them, and a document someone put is never
// replaced.
func (s *Source[T]) prepare(ctx context.Context) error {
	kv, err := s.spec.Bind(ctx, s.js)
	if err != nil {
		return err
	}
	rev, err := bus.Declare(ctx, func(ctx context.Context) (uint64, error) { return kv.Create(ctx, s.spec.Key, s.seed) })
	switch {
	case err == nil:
		s.log.Info().Uint64("revision", rev).Msgf("%s bucket held no %s: seeded it", s.spec.Bucket, s.spec.Name)
	case !WrittenMeanwhile(err):
		return fmt.Errorf("seed bucket %s: %w", s.spec.Bucket, err)
	}
	s.kv = kv
	return nil
}

// WrittenMeanwhile reports whether a Create failed because the key holds a value: the
// document was there, or another replica's seed got in first. Create returns ErrKeyExists
// for a key that has a value, but for a deleted key it retries as an update, whose lost race
// comes back as a bare wrong-last-sequence error (code 10164 on a replicated bucket).
func WrittenMeanwhile(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// load puts in force the newest valid revision since the key was last deleted. Newer
// revisions that do not validate are passed over, as the running replicas refused them: a
// restarted replica decides like the others.
func (s *Source[T]) load(ctx context.Context) error {
	entries, err := s.revisions(ctx, 0)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("bucket %s: the %s was deleted while starting", s.spec.Bucket, s.spec.Name)
	}
	s.seen = entries[len(entries)-1].revision
	type refusal struct {
		revision uint64
		err      error
	}
	var refused []refusal
	for i := len(entries) - 1; i >= 0 && entries[i].put; i-- {
		e := entries[i]
		v, err := s.spec.Parse(e.value)
		if err != nil {
			refused = append(refused, refusal{e.revision, err})
			continue
		}
		for _, r := range refused {
			s.refuse(r.revision, r.err)
		}
		s.swap(v, e.revision)
		return nil
	}
	if len(refused) == 0 {
		return fmt.Errorf("bucket %s: the %s was deleted while starting", s.spec.Bucket, s.spec.Name)
	}
	return fmt.Errorf("bucket %s holds no valid %s (put one with yactl catalog): revision %d: %w",
		s.spec.Bucket, s.spec.Name, refused[0].revision, refused[0].err)
}

// Run follows the bucket until ctx ends. A read that fails (the broker away) is tried
// again, after preparing the bucket again in case the broker lost it; the revision in force
// stays meanwhile.
func (s *Source[T]) Run(ctx context.Context) error {
	for restart := false; ; restart = true {
		err := s.follow(ctx, restart)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn().Err(err).Msgf("reading the %s bucket failed; starting again", s.spec.Name)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// PollInterval is how often the bucket is read for new revisions. The service follows it by
// message gets, not a watch: a watch's consumer could be set to deliver anywhere, and no
// service may make one (docs/security.md). A document changes a few times a year; a second
// before a new one is in force costs nothing, and the read is one small request.
const PollInterval = time.Second

func (s *Source[T]) follow(ctx context.Context, restart bool) error {
	if restart {
		if err := s.prepare(ctx); err != nil {
			return err
		}
		// A bucket made anew (the broker lost its store) numbers from 1 again: read it all.
		if e, err := s.kv.Get(ctx, s.spec.Key); err == nil && e.Revision() < s.seen {
			s.seen = 0
		}
	}
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		// Every revision after the last one looked at, in order: the newest valid one wins,
		// as it would had each been read as it was written.
		entries, err := s.revisions(ctx, s.seen)
		if err != nil {
			return err
		}
		for _, e := range entries {
			s.seen = e.revision
			s.apply(e)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// entry is one revision of the document's key.
type entry struct {
	revision uint64
	put      bool // false: a delete or purge of the key
	value    []byte
}

// revisions reads the key's revisions after revision after, in order, by message gets from
// the bucket's stream leader.
func (s *Source[T]) revisions(ctx context.Context, after uint64) ([]entry, error) {
	var out []entry
	stream, subject := "KV_"+s.spec.Bucket, "$KV."+s.spec.Bucket+"."+s.spec.Key
	_, err := bus.ReadSubject(ctx, s.js.Conn(), stream, subject, after+1, func(m *bus.StoredMsg) error {
		out = append(out, entry{revision: m.Seq, put: m.HeaderValue("KV-Operation") == "", value: m.Data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read bucket %s: %w", s.spec.Bucket, err)
	}
	return out, nil
}

func (s *Source[T]) apply(e entry) {
	if !e.put {
		s.log.Warn().Uint64("revision", e.revision).
			Uint64("in_force_revision", s.cur.Load().Revision).
			Msgf("%s removed from the bucket; the one in force stays until one is put (a service starting meanwhile seeds the bucket again)", s.spec.Name)
		return
	}
	v, err := s.spec.Parse(e.value)
	if err != nil {
		s.refuse(e.revision, err)
		return
	}
	s.swap(v, e.revision)
}

func (s *Source[T]) swap(v T, revision uint64) {
	next := &InForce[T]{Value: v, Revision: revision}
	prev := s.cur.Swap(next)
	ev := s.log.Info().Uint64("revision", revision)
	if s.spec.Describe != nil {
		ev = s.spec.Describe(ev, v)
	}
	if prev != nil {
		ev = ev.Uint64("previous_revision", prev.Revision)
	}
	ev.Msgf("%s in force", s.spec.Name)
	if prev != nil && s.onSwap != nil {
		s.onSwap(*next)
	}
}

// OnSwap sets a function called, on Run's goroutine, with every revision put in force after
// the first: for a service to check the new revision against its other documents.
func (s *Source[T]) OnSwap(fn func(InForce[T])) { s.onSwap = fn }

// refuse logs a revision that is not a valid document with every one of its problems.
func (s *Source[T]) refuse(revision uint64, err error) {
	problems := []string{err.Error()}
	if s.spec.Problems != nil {
		if p := s.spec.Problems(err); len(p) > 0 {
			problems = p
		}
	}
	ev := s.log.Error().Uint64("revision", revision).Strs("problems", problems)
	if cur := s.cur.Load(); cur != nil {
		ev = ev.Uint64("in_force_revision", cur.Revision)
	}
	ev.Msgf("%s refused; the one in force stays", s.spec.Name)
}

// Follow starts a Source, trying again with a growing pause until it can (replicas starting
// together on a fresh cluster race each other for the bucket), and returns it; or nil when
// ctx ends first. Each new set-up error is logged once and passed to failed, if set, for the
// service's readiness to say what is missing.
func Follow[T any](ctx context.Context, js jetstream.JetStream, spec Spec[T], seed []byte, log zerolog.Logger, failed func(error)) *Source[T] {
	pause := 100 * time.Millisecond
	var last string
	for {
		src, err := Start(ctx, js, spec, seed, log)
		if err == nil {
			return src
		}
		if ctx.Err() != nil {
			return nil
		}
		if err.Error() != last {
			log.Warn().Err(err).Dur("retry_in", pause).Msgf("not ready: preparing the %s again", spec.Name)
			last = err.Error()
		}
		if failed != nil {
			failed(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}
