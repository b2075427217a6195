package search

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/contracts"
)

// Entry is one write to the searches bucket as a Watch delivers it: its key and revision,
// and the record, which is decoded only when a reader asks (Done peeks, Record decodes):
// every gateway replica sees every write, and most are for searches it has nobody waiting on.
type Entry struct {
	Key      string
	Revision uint64
	// Gone is a delete or purge of the key (an operator's): no record is held any more.
	Gone  bool
	value []byte
}

// EntryOf is the entry Watch would deliver for record (nil: the key's deletion) at revision:
// for a reader that replays writes it holds, such as a test of what follows the watch.
func EntryOf(key string, revision uint64, record []byte) Entry {
	return Entry{Key: key, Revision: revision, Gone: record == nil, value: record}
}

// Done reports whether the entry holds a done search, without decoding the record.
func (e Entry) Done() (bool, error) {
	if e.Gone {
		return false, nil
	}
	done, err := contracts.PeekSearchDone(e.value)
	if err != nil {
		return false, fmt.Errorf("search %s revision %d: %w", e.Key, e.Revision, err)
	}
	return done, nil
}

// Record decodes the entry's record for an answer: everything but the decision's basis,
// which answering never needs (contracts.DecodeSearchAnswer).
func (e Entry) Record() (*contracts.Search, error) {
	if e.Gone {
		return nil, ErrNotFound
	}
	return contracts.DecodeSearchAnswer(e.Key, e.value)
}

// Watch follows every write to the searches bucket.
type Watch struct {
	kw jetstream.KeyWatcher
}

// Watch starts following the bucket from revision from (0 or 1: its first record), replaying
// what it holds from there first. Stop it when done.
func (s *Store) Watch(ctx context.Context, from uint64) (*Watch, error) {
	var opts []jetstream.WatchOpt
	if from > 1 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	kw, err := s.kv.WatchAll(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
	}
	return &Watch{kw: kw}, nil
}

// ErrWatchEnded is Next's answer once the watch has ended on the broker's side.
var ErrWatchEnded = errors.New("watch of the searches bucket ended")

// Next waits for the next write. caughtUp is true, with no entry, once: when the writes the
// bucket held at the start have all been delivered. It returns ctx's cause once ctx ends.
func (w *Watch) Next(ctx context.Context) (e Entry, caughtUp bool, err error) {
	select {
	case <-ctx.Done():
		return Entry{}, false, context.Cause(ctx)
	case je, ok := <-w.kw.Updates():
		if !ok {
			return Entry{}, false, ErrWatchEnded
		}
		if je == nil {
			return Entry{}, true, nil
		}
		return Entry{Key: je.Key(), Revision: je.Revision(), Gone: je.Operation() != jetstream.KeyValuePut, value: je.Value()}, false, nil
	}
}

// Stop ends the watch.
func (w *Watch) Stop() error { return w.kw.Stop() }

// Revisions is the span of revisions the bucket holds now.
type Revisions struct {
	First, Last uint64
	Records     uint64 // how many it holds
}

// Holds reports whether rev is within the span the bucket holds (an expired one is not).
func (r Revisions) Holds(rev uint64) bool { return r.Records > 0 && r.First <= rev && rev <= r.Last }

// Revisions reads the span of revisions the bucket holds: one small request to the broker.
func (s *Store) Revisions(ctx context.Context) (Revisions, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	st, err := s.kv.Status(ctx)
	if err != nil {
		return Revisions{}, fmt.Errorf("status of %s: %w", contracts.BucketSearches, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return Revisions{}, fmt.Errorf("status of %s: %T", contracts.BucketSearches, st)
	}
	info := bs.StreamInfo().State
	return Revisions{First: info.FirstSeq, Last: info.LastSeq, Records: info.Msgs}, nil
}
