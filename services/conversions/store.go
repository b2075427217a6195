package conversions

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
)

// errNotFailed is Requeue's refusal of a conversion Yandex has not refused.
var errNotFailed = errors.New("not failed")

// Errors of the store.
var (
	// ErrConflict: the search's offer already has a conversion with other figures.
	ErrConflict = errors.New("a different conversion is recorded for this search and offer")
	ErrNotFound = errors.New("no such conversion")
)

// Store keeps conversions in the bucket.
type Store struct {
	kv jetstream.KeyValue
	nc *nats.Conn // the reads of the whole bucket (Each, follow)
}

// BindStore binds to the bucket, as the provisioner made it: its reads come from the
// stream's leader (a lagging replica's older revision would make the worker skip a
// conversion still to send, or a repeat look like a new report).
func BindStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := bus.BindLeaderRead(ctx, js, contracts.BucketConversions)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, nc: js.Conn()}, nil
}

// Record stores a new conversion. A repeat of the same report is no error: it returns the
// record already there with created false. Returning means the record is on disk (the
// bucket's stream is file-backed, and our servers sync every write: sync_interval: always
// in the shipped configurations, SyncAlways in the embedded one).
func (s *Store) Record(ctx context.Context, c *contracts.Conversion) (stored *contracts.Conversion, created bool, err error) {
	data, err := contracts.EncodeConversion(c)
	if err != nil {
		return nil, false, err
	}
	_, err = s.kv.Create(ctx, c.ID, data)
	if err == nil {
		return c, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, fmt.Errorf("record conversion %s: %w", c.ID, err)
	}
	have, _, err := s.Get(ctx, c.ID)
	if err != nil {
		return nil, false, err
	}
	if !have.SameReport(*c) {
		return have, false, ErrConflict
	}
	return have, false, nil
}

// Get reads a conversion and its revision.
func (s *Store) Get(ctx context.Context, key string) (*contracts.Conversion, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, fmt.Errorf("conversion %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read conversion %s: %w", key, err)
	}
	c, err := contracts.DecodeConversion(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return c, e.Revision(), nil
}

// Update changes a conversion with fn, compare-and-set on the revision fn saw, reading
// again and re-applying fn when another writer came first. fn returning nil leaves the
// record as it is.
func (s *Store) Update(ctx context.Context, key string, fn func(*contracts.Conversion) *contracts.Conversion) (*contracts.Conversion, error) {
	for {
		c, rev, err := s.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		next := fn(c)
		if next == nil {
			return c, nil
		}
		data, err := contracts.EncodeConversion(next)
		if err != nil {
			return nil, err
		}
		_, err = s.kv.Update(ctx, key, data, rev)
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("update conversion %s: %w", key, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// Each calls fn with every conversion in the bucket, in the order they were last written.
// It reads the bucket's stream by message gets (package bus), as every read of the whole
// bucket does here: a watch would make a consumer, and a consumer can be set to deliver
// anywhere (docs/security.md). The bucket keeps one revision per key, so its messages are
// its conversions as they stand, and the deletions of some.
func (s *Store) Each(ctx context.Context, fn func(*contracts.Conversion) error) error {
	_, err := s.read(ctx, 0, func(key string, c *contracts.Conversion, bad error) error {
		if bad != nil {
			return bad
		}
		if c == nil {
			return nil
		}
		return fn(c)
	})
	return err
}

const (
	conversionsStream = "KV_" + contracts.BucketConversions
	conversionsPrefix = "$KV." + contracts.BucketConversions + "."
)

// read calls fn with each message of the bucket's stream from sequence from (0: its first)
// to its end as it stands when read begins: the conversion under its key, nil for a
// deletion, or the reason a record cannot be decoded. It returns the sequence after the
// last one read.
func (s *Store) read(ctx context.Context, from uint64, fn func(key string, c *contracts.Conversion, bad error) error) (uint64, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return from, fmt.Errorf("read conversions: %w", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return from, fmt.Errorf("read conversions: status %T", st)
	}
	state := bs.StreamInfo().State
	from = max(from, state.FirstSeq)
	err = bus.ReadRange(ctx, s.nc, conversionsStream, from, state.LastSeq, func(m *bus.StoredMsg) error {
		key, ok := strings.CutPrefix(m.Subject, conversionsPrefix)
		if !ok {
			return nil
		}
		if m.HeaderValue("KV-Operation") != "" {
			return fn(key, nil, nil)
		}
		c, err := contracts.DecodeConversion(m.Data)
		if err != nil {
			return fn(key, nil, fmt.Errorf("conversion %s: %w", key, err))
		}
		return fn(key, c, nil)
	})
	if err != nil {
		return from, fmt.Errorf("read conversions: %w", err)
	}
	return max(from, state.LastSeq+1), nil
}

// Requeue puts a failed conversion back in the queue, for an operator once the cause is
// fixed; a queued or delivered one is left alone and reported.
func (s *Store) Requeue(ctx context.Context, key string) (*contracts.Conversion, error) {
	var was contracts.ConversionState
	c, err := s.Update(ctx, key, func(c *contracts.Conversion) *contracts.Conversion {
		was = c.State
		if c.State != contracts.ConversionFailed {
			return nil
		}
		next := *c
		next.State, next.FailedAt = contracts.ConversionQueued, nil
		return &next
	})
	if err != nil {
		return nil, err
	}
	if was != contracts.ConversionFailed {
		return c, fmt.Errorf("%w: conversion %s is %s", errNotFailed, key, was)
	}
	return c, nil
}
