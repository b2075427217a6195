// Package audit keeps the decisions of finished searches for a year, after the searches
// bucket has forgotten them (SEARCH_RETENTION, a day): a durable consumer of that bucket
// reads each finished record and writes them, many to a message, to the AUDIT stream. One
// synced write carries up to MaxBatch searches, so the trail costs a small fraction of the
// one synced write a search already takes. Find reads a search back.
//
// What is kept is the record as the bucket held it (the request, the offers as sent, the
// reason codes and the basis of the decision) without the masked phone and Yandex's props
// (contracts.AuditRecord): the keyed phone hash is the only trace of the client. The trail
// is at least once: a replica that dies between writing a batch and acknowledging it has the
// same searches written again in a later batch; Find returns the first.
package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
)

// DefaultRetention is how long decisions are kept: a year and a day, so that a complaint
// made on a search's anniversary still finds it.
const DefaultRetention = 366 * 24 * time.Hour

// Batching: a batch is written when it holds MaxBatch searches or maxBatchBytes, or when
// Linger has passed since the first fetch returned nothing more.
const (
	MaxBatch      = 500
	maxBatchBytes = 768 << 10 // under the broker's default 1 MiB max_payload
	Linger        = time.Second
)

// StreamConfig is the AUDIT stream: on disk, replicated, kept for retention.
func StreamConfig(replicas int, retention time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        contracts.StreamAudit,
		Description: "finished searches' decisions, in batches, kept for the audit trail",
		Subjects:    []string{contracts.SubjectAudit},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      retention,
		Duplicates:  2 * time.Minute,
		Replicas:    replicas,
	}
}

// consumerConfig reads every record of the searches bucket, from its oldest: the first
// writer to start also keeps what the bucket held before the trail existed.
func consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       contracts.ConsumerAudit,
		Description:   "writes finished searches to the AUDIT stream",
		FilterSubject: "$KV." + contracts.BucketSearches + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 4 * MaxBatch,
	}
}

// Writer moves finished searches from the bucket to the trail. Every offers replica runs
// one on the same durable consumer.
type Writer struct {
	JS        jetstream.JetStream
	Replicas  int
	Retention time.Duration
	Log       zerolog.Logger
	// Written, if set, is told how many searches each batch held once it is stored.
	Written func(n int)
}

// Run writes batches until ctx ends, declaring what it needs again after any failure.
func (w *Writer) Run(ctx context.Context) error {
	pause := 100 * time.Millisecond
	for {
		err := w.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.Log.Warn().Err(err).Dur("retry_in", pause).Msg("audit trail writer interrupted; starting it again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

func (w *Writer) run(ctx context.Context) error {
	if err := bus.EnsureStream(ctx, w.JS, StreamConfig(w.Replicas, w.Retention)); err != nil {
		return fmt.Errorf("ensure stream %s: %w", contracts.StreamAudit, err)
	}
	cons, err := bus.EnsureConsumer(ctx, w.JS, "KV_"+contracts.BucketSearches, consumerConfig())
	if err != nil {
		return fmt.Errorf("ensure consumer %s: %w", contracts.ConsumerAudit, err)
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, Linger)
		batch, err := cons.Fetch(MaxBatch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch: %w", err)
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		cancel()
		if ctx.Err() != nil { // stopping: another replica takes them at once
			for _, m := range msgs {
				_ = m.Nak()
			}
			return nil
		}
		if err := batch.Error(); err != nil && len(msgs) == 0 && ctx.Err() == nil &&
			!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("fetch: %w", err)
		}
		if err := w.write(ctx, msgs); err != nil {
			return err
		}
	}
	return nil
}

// write stores the finished searches among msgs in as few messages as fit, then
// acknowledges every message: the finished ones once their batch is stored, the rest
// (pending records, deletions, records that do not decode) because the trail has nothing
// to keep of them.
func (w *Writer) write(ctx context.Context, msgs []jetstream.Msg) error {
	var (
		entries []contracts.AuditEntry
		size    int
		held    []jetstream.Msg
		first   uint64
	)
	flush := func(last uint64) error {
		if len(entries) > 0 {
			data, err := jsonv2.Marshal(contracts.AuditBatch{Records: entries})
			if err != nil {
				return fmt.Errorf("encode audit batch: %w", err)
			}
			// The id names the bucket's sequences the batch covers: a batch written again
			// before its acks landed (the same messages, redelivered in the same order) is
			// recognised within the stream's duplicate window.
			id := "audit." + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10)
			if _, err := w.JS.Publish(ctx, contracts.SubjectAudit, data, jetstream.WithMsgID(id)); err != nil {
				for _, m := range held {
					_ = m.Nak()
				}
				return fmt.Errorf("write audit batch: %w", err)
			}
			if w.Written != nil {
				w.Written(len(entries))
			}
		}
		for _, m := range held {
			_ = m.Ack()
		}
		entries, size, held, first = nil, 0, nil, 0
		return nil
	}
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			_ = m.Ack()
			continue
		}
		if first == 0 {
			first = meta.Sequence.Stream
		}
		held = append(held, m)
		entry, ok := w.entry(m)
		if ok {
			entries = append(entries, entry)
			size += len(entry.Record) + len(entry.SearchID) + 32
		}
		if size >= maxBatchBytes {
			if err := flush(meta.Sequence.Stream); err != nil {
				return err
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	meta, _ := held[len(held)-1].Metadata()
	var last uint64
	if meta != nil {
		last = meta.Sequence.Stream
	}
	return flush(last)
}

// entry is a bucket message as the trail keeps it, if it is a finished search.
func (w *Writer) entry(m jetstream.Msg) (contracts.AuditEntry, bool) {
	if op := m.Headers().Get("KV-Operation"); op != "" { // a deletion or a purge
		return contracts.AuditEntry{}, false
	}
	id := strings.TrimPrefix(m.Subject(), "$KV."+contracts.BucketSearches+".")
	rec, err := contracts.DecodeSearch(id, m.Data())
	if err != nil {
		w.Log.Error().Err(err).Str("search_id", id).Msg("audit trail: a search record that does not decode is not kept")
		return contracts.AuditEntry{}, false
	}
	if rec.Status() != contracts.Done {
		return contracts.AuditEntry{}, false
	}
	data, err := contracts.EncodeSearch(contracts.AuditRecord(rec))
	if err != nil {
		return contracts.AuditEntry{}, false
	}
	return contracts.AuditEntry{SearchID: id, Record: jsontext.Value(data)}, true
}

// ErrNotFound is Find's answer for a search the trail does not hold.
var ErrNotFound = errors.New("search not in the audit trail")

// Find reads the trail from since (zero: its oldest batch) for the search id, and returns
// its record as kept, and how many batches it read. It stops at the end of the trail as it
// stood when the search began.
func Find(ctx context.Context, js jetstream.JetStream, id string, since time.Time) (*contracts.Search, int, error) {
	s, err := js.Stream(ctx, contracts.StreamAudit)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, ErrNotFound // no offers service has run yet
	}
	if err != nil {
		return nil, 0, fmt.Errorf("audit stream: %w", err)
	}
	state := s.CachedInfo().State
	last := state.LastSeq
	if last == 0 || !since.IsZero() && since.After(state.LastTime) {
		return nil, 0, ErrNotFound
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("read audit stream: %w", err)
	}
	read := 0
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
				return nil, read, ErrNotFound
			}
			return nil, read, fmt.Errorf("read audit stream: %w", err)
		}
		read++
		b, err := contracts.DecodeAuditBatch(m.Data())
		if err == nil {
			for _, e := range b.Records {
				if e.SearchID == id {
					rec, err := contracts.DecodeSearch(id, e.Record)
					return rec, read, err
				}
			}
		}
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Stream >= last {
			return nil, read, ErrNotFound
		}
	}
}
