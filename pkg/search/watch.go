package search

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
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

// Watch follows every write to the searches bucket with no consumer of its own: a consumer,
// even a watch's ephemeral one, can be set to deliver anywhere, so the gateway may make none
// (docs/security.md). What the bucket holds from the start revision is read by message gets
// from the stream's leader; each later write arrives as the stream republishes it once
// stored (contracts.SubjectSearchWritten, which the provisioner sets and only the gateway
// may read). A republished write that skips revisions (missed while the connection was
// down, or dropped from a full buffer) has the ones between read first, so that writes are
// delivered in the bucket's order, each once.
type Watch struct {
	nc       *nats.Conn
	sub      *nats.Subscription
	next     uint64 // the next revision to deliver
	last     uint64 // the bucket's newest revision when the watch began: replayed up to it
	replayed bool
	backlog  []Entry
}

// Watch starts following the bucket from revision from (0 or 1: its first record), replaying
// what it holds from there first. Stop it when done.
func (s *Store) Watch(ctx context.Context, from uint64) (*Watch, error) {
	sub, err := s.nc.SubscribeSync(contracts.SubjectSearchWritten + ".>")
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
	}
	// Subscribed before the newest revision is read: a write after it is republished to us.
	fctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
	}
	r, err := s.Revisions(ctx)
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
	}
	// A bucket made anew (a broker that lost its store) numbers from 1 again: a start beyond
	// its end would skip what it holds.
	next := min(max(from, 1), r.Last+1)
	return &Watch{nc: s.nc, sub: sub, next: next, last: r.Last}, nil
}

// ErrWatchEnded is Next's answer once the watch has ended on the broker's side.
var ErrWatchEnded = errors.New("watch of the searches bucket ended")

// Next waits for the next write. caughtUp is true, with no entry, once: when the writes the
// bucket held at the start have all been delivered. It returns ctx's cause once ctx ends.
func (w *Watch) Next(ctx context.Context) (e Entry, caughtUp bool, err error) {
	for {
		if len(w.backlog) > 0 {
			e, w.backlog = w.backlog[0], w.backlog[1:]
			return e, false, nil
		}
		if !w.replayed {
			if w.next > w.last {
				w.replayed = true
				return Entry{}, true, nil
			}
			if err := w.fill(ctx, min(w.next+bus.ReadWindow-1, w.last)); err != nil {
				return Entry{}, false, err
			}
			continue
		}
		m, err := w.sub.NextMsgWithContext(ctx)
		switch {
		case ctx.Err() != nil:
			return Entry{}, false, context.Cause(ctx)
		case errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed):
			return Entry{}, false, ErrWatchEnded
		case err != nil:
			return Entry{}, false, fmt.Errorf("watch %s: %w", contracts.BucketSearches, err)
		}
		e, err := republished(m)
		if err != nil {
			return Entry{}, false, err
		}
		switch {
		case e.Revision < w.next: // replayed or read already
			continue
		case e.Revision > w.next:
			if err := w.fill(ctx, e.Revision-1); err != nil {
				return Entry{}, false, err
			}
			w.backlog = append(w.backlog, e)
			w.next = e.Revision + 1
			continue
		}
		w.next++
		return e, false, nil
	}
}

// fill reads the revisions from w.next to upTo into the backlog.
func (w *Watch) fill(ctx context.Context, upTo uint64) error {
	err := bus.ReadRange(ctx, w.nc, searchesStream, w.next, upTo, func(m *bus.StoredMsg) error {
		key, ok := strings.CutPrefix(m.Subject, keyPrefix)
		if !ok {
			return nil
		}
		w.backlog = append(w.backlog, Entry{Key: key, Revision: m.Seq, Gone: m.HeaderValue(kvOperation) != "", value: m.Data})
		return nil
	})
	if err != nil {
		return fmt.Errorf("watch %s: read revisions %d to %d: %w", contracts.BucketSearches, w.next, upTo, err)
	}
	w.next = upTo + 1
	return nil
}

const (
	searchesStream = "KV_" + contracts.BucketSearches
	keyPrefix      = "$KV." + contracts.BucketSearches + "."
	// kvOperation is the header of a key's deletion or purge (its value DEL or PURGE).
	kvOperation = "KV-Operation"
)

// republished is the entry a republished write carries.
func republished(m *nats.Msg) (Entry, error) {
	key, ok := strings.CutPrefix(m.Header.Get(jetstream.SubjectHeader), keyPrefix)
	rev, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if !ok || err != nil {
		return Entry{}, fmt.Errorf("watch %s: a republished write without its subject or sequence", contracts.BucketSearches)
	}
	return Entry{Key: key, Revision: rev, Gone: m.Header.Get(kvOperation) != "", value: m.Data}, nil
}

// Stop ends the watch.
func (w *Watch) Stop() error { return w.sub.Unsubscribe() }

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
