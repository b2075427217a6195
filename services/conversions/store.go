package conversions

import (
	"context"
	"errors"
	"fmt"

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
}

// BindStore binds to the bucket, as the provisioner made it: its reads come from the
// stream's leader (a lagging replica's older revision would make the worker skip a
// conversion still to send, or a repeat look like a new report).
func BindStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := bus.BindLeaderRead(ctx, js, contracts.BucketConversions)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv}, nil
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
func (s *Store) Each(ctx context.Context, fn func(*contracts.Conversion) error) error {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("list conversions: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("list conversions: the watch ended")
			}
			if e == nil {
				return nil // every current value has been seen
			}
			c, err := contracts.DecodeConversion(e.Value())
			if err != nil {
				return fmt.Errorf("conversion %s: %w", e.Key(), err)
			}
			if err := fn(c); err != nil {
				return err
			}
		}
	}
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
