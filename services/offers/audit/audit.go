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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// Batching: a batch is written when it holds MaxBatch searches or maxBatchBytes, or when
// Linger has passed since the first fetch returned nothing more.
const (
	MaxBatch      = provision.AuditMaxBatch
	maxBatchBytes = 768 << 10 // under the broker's default 1 MiB max_payload
	Linger        = time.Second
)

// Writer moves finished searches from the bucket to the trail. Every offers replica runs
// one on the same durable consumer.
type Writer struct {
	JS  jetstream.JetStream
	Log zerolog.Logger
	// Pseudonyms replace each record's phone hash (required).
	Pseudonyms *Pseudonyms
	// Written, if set, is told how many searches each batch held once it is stored.
	Written func(n int)
}

// Run writes batches until ctx ends, binding to what it needs again after any failure.
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
	if w.Pseudonyms == nil {
		return errors.New("audit trail writer: no pseudonym key") // a bug: Run's caller sets it
	}
	// The stream and the consumer are the provisioner's; the writer binds and checks.
	if err := provision.Check(ctx, w.JS, provision.Audit(provision.Settings{})); err != nil {
		return err
	}
	want := provision.AuditConsumer()
	cons, err := bus.BindConsumer(ctx, w.JS, want.On, want.Consumer)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		msgs, err := bus.Fetch(ctx, cons, MaxBatch, Linger)
		if ctx.Err() != nil { // stopping: another replica takes them at once
			for _, m := range msgs {
				_ = m.Nak()
			}
			return nil
		}
		if err != nil && len(msgs) == 0 {
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
// (pending records, deletions, records that do not parse) because the trail has nothing to
// keep of them. A batch is the JSON of contracts.AuditBatch, written by hand around the
// records' own bytes (encoding it would parse every record again), and stored compressed
// (contracts.CompressAuditBatch).
func (w *Writer) write(ctx context.Context, msgs []jetstream.Msg) error {
	var (
		batch []byte
		n     int
		held  []jetstream.Msg
		seqs  = sha256.New()
	)
	flush := func() error {
		if n > 0 {
			batch = append(batch, "]}"...)
			// The id is a digest of every bucket sequence the batch holds: a batch written
			// again before its acks landed (the same messages, redelivered) is recognised
			// within the stream's duplicate window, and one with other messages (replicas
			// share the consumer, so a batch can have gaps) never is.
			id := "audit." + hex.EncodeToString(seqs.Sum(nil)[:16])
			msg := &nats.Msg{Subject: contracts.SubjectAudit, Data: contracts.CompressAuditBatch(batch),
				Header: nats.Header{contracts.AuditEncodingHeader: []string{contracts.AuditEncodingS2}}}
			region := telemetry.Region(ctx, "audit batch write")
			_, err := w.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
			region.End()
			if err != nil {
				for _, m := range held {
					_ = m.Nak()
				}
				return fmt.Errorf("write audit batch: %w", err)
			}
			if w.Written != nil {
				w.Written(n)
			}
		}
		region := telemetry.Region(ctx, "audit batch acks")
		for _, m := range held {
			_ = m.Ack()
		}
		region.End()
		batch, n, held = batch[:0], 0, held[:0]
		seqs.Reset()
		return nil
	}
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			_ = m.Ack()
			continue
		}
		held = append(held, m)
		seqs.Write(strconv.AppendUint(nil, meta.Sequence.Stream, 10))
		seqs.Write([]byte{','})
		id, record, ok := w.entry(m)
		if ok {
			if n == 0 {
				batch = append(batch, `{"pseudonym_key":"`...)
				batch = append(batch, w.Pseudonyms.ID()...)
				batch = append(batch, `","records":[`...)
			} else {
				batch = append(batch, ',')
			}
			batch = append(batch, `{"search_id":"`...)
			batch = append(batch, id...)
			batch = append(batch, `","record":`...)
			batch = append(batch, record...)
			batch = append(batch, '}')
			n++
		}
		if len(batch) >= maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(held) == 0 {
		return nil
	}
	return flush()
}

// entry is a bucket message as the trail keeps it, if it is a finished search: its id and
// the record without the masked phone and the props (contracts.AuditRecord's cut, made on
// the bytes).
func (w *Writer) entry(m jetstream.Msg) (string, []byte, bool) {
	if op := m.Headers().Get("KV-Operation"); op != "" { // a deletion or a purge
		return "", nil, false
	}
	id := strings.TrimPrefix(m.Subject(), "$KV."+contracts.BucketSearches+".")
	if !searchIDPattern.MatchString(id) {
		return "", nil, false
	}
	record, done, err := safeCopy(id, m.Data(), w.Pseudonyms)
	if err != nil {
		w.Log.Error().Err(err).Str("search_id", id).Msg("audit trail: a search record that does not parse is not kept")
		return "", nil, false
	}
	return id, record, done
}

// safeCopy is AuditCopy with a panic turned into an error: one odd record must never stop
// every replica's trail (its message is redelivered without limit).
func safeCopy(id string, data []byte, p *Pseudonyms) (out []byte, done bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, done, err = nil, false, fmt.Errorf("audit copy panicked: %v", p)
		}
	}()
	return AuditCopy(id, data, p)
}

var searchIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// AuditCopy is the record of search id as the trail keeps it: without the request's
// phone_masked, props and phone_key (contracts.AuditRecord), its phone_hash replaced by its
// pseudonym under p, and whether the search is done. For a record of today's schema it cuts
// the three members out of the record's bytes and writes the pseudonym over the hash (the
// same length), finding them with a tokenizer that parses no other value, so that the trail
// costs a fraction of decoding and encoding every record; an older record (whose props stand
// elsewhere) is decoded and written in today's schema.
func AuditCopy(id string, data []byte, p *Pseudonyms) (_ []byte, done bool, _ error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false, fmt.Errorf("a record is a JSON object: %v", err)
	}
	var cuts [][2]int64
	schema, hashAt := int64(-1), int64(-1)
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, false, err
		}
		switch name.String() {
		case "schema":
			tok, err := dec.ReadToken()
			if err != nil || tok.Kind() != '0' {
				return nil, false, fmt.Errorf("a record's schema is a number: %v", err)
			}
			if schema, err = tok.Int(); err != nil {
				return nil, false, fmt.Errorf("a record's schema: %v", err)
			}
			continue
		case "done_at":
			done = dec.PeekKind() != 'n'
		case "request":
			if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
				return nil, false, fmt.Errorf("a record's request is a JSON object: %v", err)
			}
			open := dec.InputOffset()
			for dec.PeekKind() == '"' {
				start := dec.InputOffset() // before the member's comma, if it has one
				key, err := dec.ReadToken()
				if err != nil {
					return nil, false, err
				}
				k := key.String() // before the next call voids the token
				if k == "phone_hash" {
					tok, err := dec.ReadToken()
					end := dec.InputOffset()
					if err != nil || tok.Kind() != '"' || len(tok.String()) != 64 || end < 66 || data[end-66] != '"' || !isHash(data[end-65:end-1]) {
						return nil, false, fmt.Errorf("a record's phone_hash is 64 hex digits: %v", err)
					}
					hashAt = end - 65
					continue
				}
				if err := dec.SkipValue(); err != nil {
					return nil, false, err
				}
				if k == "phone_masked" || k == "props" || k == "phone_key" {
					end := dec.InputOffset()
					if start == open && end < int64(len(data)) && data[end] == ',' {
						end++ // the first member: its comma follows it
					}
					if n := len(cuts); n > 0 && cuts[n-1][1] >= start {
						cuts[n-1][1] = end // the member right after a cut one
						if cuts[n-1][0] == open && end < int64(len(data)) && data[end] == ',' {
							cuts[n-1][1]++
						}
						continue
					}
					cuts = append(cuts, [2]int64{start, end})
				}
			}
			if _, err := dec.ReadToken(); err != nil {
				return nil, false, err
			}
			continue
		}
		if err := dec.SkipValue(); err != nil {
			return nil, false, err
		}
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' {
		return nil, false, fmt.Errorf("a record ends its object: %v", err)
	}
	if schema != contracts.SearchSchema && schema != contracts.SearchSchemaRefs {
		rec, err := contracts.DecodeSearch(id, data)
		if err != nil {
			return nil, false, err
		}
		kept := contracts.AuditRecord(rec)
		if !isHash([]byte(kept.Request.PhoneHash)) {
			return nil, false, errors.New("a record's phone_hash is not 64 hex digits")
		}
		pseudonym := make([]byte, 64)
		p.Of(pseudonym, []byte(kept.Request.PhoneHash))
		kept.Request.PhoneHash = string(pseudonym)
		out, err := contracts.EncodeSearch(kept)
		return out, rec.Status() == contracts.Done, err
	}
	if hashAt < 0 {
		return nil, false, errors.New("a record's request has no phone_hash")
	}
	out := make([]byte, 0, len(data))
	var at, pseudonymAt int64
	for _, c := range cuts {
		out = append(out, data[at:c[0]]...)
		if c[0] <= hashAt {
			pseudonymAt += c[1] - c[0] // the hash moves left by what is cut before it
		}
		at = c[1]
	}
	out = append(out, data[at:]...)
	pseudonymAt = hashAt - pseudonymAt
	p.Of(out[pseudonymAt:pseudonymAt+64], data[hashAt:hashAt+64])
	return out, done, nil
}

// isHash reports whether b is 64 lowercase hex digits.
func isHash(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ErrNotFound is Find's answer for a search the trail does not hold.
var ErrNotFound = errors.New("search not in the audit trail")

// Find reads the trail from since (zero: its oldest batch) for the search id, and returns
// its record as kept, and how many batches it read. It stops at the end of the trail as it
// stood when the search began. It reads with message gets alone: the auditor who runs it may
// make no consumer, which could be set to deliver the trail anywhere (docs/security.md).
// The trail's sequences are contiguous (nothing is deleted from it but by age), so after the
// first batch it asks for findWindow of them at once, in order of sequence, and tries each
// again on a timeout or an unavailable leader.
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
	nc := js.Conn()
	// The first batch: the trail's oldest, or the first written at or after since.
	first := bus.MsgGet{NextFor: contracts.SubjectAudit, Seq: state.FirstSeq}
	if !since.IsZero() {
		first.Seq, first.StartTime = 0, &since
	}
	m, err := bus.GetMsg(ctx, nc, contracts.StreamAudit, first)
	if errors.Is(err, bus.ErrNoMessage) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read audit stream: %w", err)
	}
	read := 1
	if rec, err := findIn(m, id); rec != nil || err != nil {
		return rec, read, err
	}
	var found *contracts.Search
	err = bus.ReadRange(ctx, nc, contracts.StreamAudit, m.Seq+1, last, func(m *bus.StoredMsg) error {
		read++
		rec, err := findIn(m, id)
		if rec != nil && err == nil {
			found, err = rec, errFound
		}
		return err
	})
	switch {
	case errors.Is(err, errFound):
		return found, read, nil
	case err != nil:
		return nil, read, fmt.Errorf("read audit stream: %w", err)
	}
	return nil, read, ErrNotFound
}

// errFound ends Find's read at the search's batch.
var errFound = errors.New("found")

// findWindow is how many batches Find asks for at once.
const findWindow = bus.ReadWindow

// findIn returns the search's record if batch m holds it.
func findIn(m *bus.StoredMsg, id string) (*contracts.Search, error) {
	b, err := contracts.DecodeAuditMsg(m.HeaderValue(contracts.AuditEncodingHeader), m.Data)
	if err != nil {
		return nil, nil // not a batch of ours: nothing of the search in it
	}
	for _, e := range b.Records {
		if e.SearchID == id {
			return contracts.DecodeSearch(id, e.Record)
		}
	}
	return nil, nil
}
