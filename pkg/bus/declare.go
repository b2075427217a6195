package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeclareTimeout bounds one call on JetStream's API (looking up, creating or updating a
// stream, bucket or consumer). On a cluster, concurrent calls on one stream can go
// unanswered; a short wait and another try beats waiting out a long timeout.
const DeclareTimeout = 2 * time.Second

// Declare runs one call on JetStream's API with its own DeclareTimeout.
func Declare[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, DeclareTimeout)
	defer cancel()
	return call(ctx)
}

// ErrNotProvisioned says that a stream, bucket or consumer a service needs does not exist,
// or is set otherwise than the services expect: the administrator's to fix
// (`yactl provision`), never the service's.
var ErrNotProvisioned = errors.New("not provisioned as planned (yactl provision)")

// ErrDirectReads is BindLeaderRead's answer for a bucket whose reads still come from any
// replica (or that does not exist yet).
var ErrDirectReads = errors.New("bucket not provisioned yet, or still read from any replica")

// BindLeaderRead binds to a bucket whose reads must come from its stream's leader. A
// replicated bucket lets any replica answer a "direct get", and a lagging one shows an old
// revision: a finished record as unfinished, a stale revision fed to compare-and-set over
// and over. The client decides at bind time, from the stream's AllowDirect, so a handle is
// bound only once the provisioner has turned AllowDirect off.
func BindLeaderRead(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	stream, err := Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, "KV_"+bucket) })
	if errors.Is(err, jetstream.ErrStreamNotFound) || (err == nil && stream.CachedInfo().Config.AllowDirect) {
		return nil, fmt.Errorf("bind bucket %s: %w", bucket, ErrDirectReads)
	}
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", bucket, err)
	}
	kv, err := Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, bucket) })
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// BindConsumer binds to the durable consumer cfg describes on stream, which the
// provisioner made: one that is missing, or set otherwise, is an error naming the
// difference, and nothing is changed.
func BindConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return js.Consumer(ctx, stream, cfg.Durable) })
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("consumer %s/%s is missing: %w", stream, cfg.Durable, ErrNotProvisioned)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: %w", stream, cfg.Durable, err)
	}
	if d := ConsumerDiff(c.CachedInfo().Config, cfg); len(d) > 0 {
		return nil, fmt.Errorf("consumer %s/%s differs (%s): %w", stream, cfg.Durable, strings.Join(d, "; "), ErrNotProvisioned)
	}
	return c, nil
}

// Field is one setting compared: its name as JetStream spells it, and its two values.
type Field struct {
	Name       string
	Have, Want any
}

// Differences lists the fields whose values differ, as "name: have X, want Y".
func Differences(fields ...Field) []string {
	var out []string
	for _, f := range fields {
		if !equal(f.Have, f.Want) {
			out = append(out, fmt.Sprintf("%s: have %v, want %v", f.Name, f.Have, f.Want))
		}
	}
	return out
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case []string:
		return slices.Equal(a, b.([]string))
	case []time.Duration:
		return slices.Equal(a, b.([]time.Duration))
	}
	return a == b
}

// ConsumerDiff lists the settings we plan that have differs in.
func ConsumerDiff(have, want jetstream.ConsumerConfig) []string {
	return Differences(
		Field{"filter_subject", have.FilterSubject, want.FilterSubject},
		Field{"deliver_subject", have.DeliverSubject, want.DeliverSubject},
		Field{"ack_policy", have.AckPolicy, want.AckPolicy},
		Field{"ack_wait", have.AckWait, want.AckWait},
		Field{"max_deliver", have.MaxDeliver, want.MaxDeliver},
		Field{"backoff", have.BackOff, want.BackOff},
		Field{"max_ack_pending", have.MaxAckPending, want.MaxAckPending},
		Field{"deliver_policy", have.DeliverPolicy, want.DeliverPolicy},
	)
}

// StreamDiff lists the settings we plan that have differs in, and those no plan sets but a
// stream could be given to reach other streams (sources, a mirror, a subject transform): a
// stream of ours must have none, and no republish but the one planned. It also compares the features a stream is
// given by a flag, which change what a writer may do or what a write means: writes no
// longer synced one by one (persist_mode async), messages that expire by their own header
// (allow_msg_ttl, which cannot be turned off again), that schedule others, count, roll up,
// or land in batches, and a cap on consumers that would refuse the services' own.
func StreamDiff(have, want jetstream.StreamConfig) []string {
	// What the server fills in for a zero: no limit, its default window.
	for _, v := range []*int64{&want.MaxBytes, &want.MaxMsgs, &want.MaxMsgsPerSubject} {
		if *v == 0 {
			*v = -1
		}
	}
	if want.MaxConsumers == 0 {
		want.MaxConsumers = -1
	}
	if want.MaxMsgSize == 0 {
		want.MaxMsgSize = -1
	}
	if want.Duplicates == 0 {
		want.Duplicates = have.Duplicates
	}
	d := Differences(
		Field{"subjects", have.Subjects, want.Subjects},
		Field{"storage", have.Storage, want.Storage},
		Field{"retention", have.Retention, want.Retention},
		Field{"discard", have.Discard, want.Discard},
		Field{"max_age", have.MaxAge, want.MaxAge},
		Field{"max_bytes", have.MaxBytes, want.MaxBytes},
		Field{"max_msgs", have.MaxMsgs, want.MaxMsgs},
		Field{"max_msgs_per_subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject},
		Field{"max_msg_size", have.MaxMsgSize, want.MaxMsgSize},
		Field{"duplicate_window", have.Duplicates, want.Duplicates},
		Field{"num_replicas", have.Replicas, want.Replicas},
		Field{"description", have.Description, want.Description},
		Field{"deny_delete", have.DenyDelete, want.DenyDelete},
		Field{"deny_purge", have.DenyPurge, want.DenyPurge},
		Field{"compression", have.Compression, want.Compression},
		Field{"sealed", have.Sealed, want.Sealed},
		Field{"no_ack", have.NoAck, want.NoAck},
		Field{"allow_direct", have.AllowDirect, want.AllowDirect},
		Field{"max_consumers", have.MaxConsumers, want.MaxConsumers},
		Field{"persist_mode", have.PersistMode, want.PersistMode},
		Field{"allow_rollup_hdrs", have.AllowRollup, want.AllowRollup},
		Field{"allow_msg_ttl", have.AllowMsgTTL, want.AllowMsgTTL},
		Field{"subject_delete_marker_ttl", have.SubjectDeleteMarkerTTL, want.SubjectDeleteMarkerTTL},
		Field{"allow_msg_schedules", have.AllowMsgSchedules, want.AllowMsgSchedules},
		Field{"allow_msg_counter", have.AllowMsgCounter, want.AllowMsgCounter},
		Field{"allow_atomic", have.AllowAtomicPublish, want.AllowAtomicPublish},
		Field{"allow_batched", have.AllowBatchPublish, want.AllowBatchPublish},
		Field{"mirror_direct", have.MirrorDirect, want.MirrorDirect},
		Field{"discard_new_per_subject", have.DiscardNewPerSubject, want.DiscardNewPerSubject},
	)
	if len(have.Sources) > 0 {
		d = append(d, fmt.Sprintf("sources: have %d, want none", len(have.Sources)))
	}
	if have.Mirror != nil {
		d = append(d, "mirror: have "+have.Mirror.Name+", want none")
	}
	if d1, d2 := describeRePublish(have.RePublish), describeRePublish(want.RePublish); d1 != d2 {
		d = append(d, "republish: have "+d1+", want "+d2)
	}
	if have.SubjectTransform != nil {
		d = append(d, "subject_transform: have one, want none")
	}
	return d
}

// describeRePublish names a republish for a difference: "none", or "source → destination".
func describeRePublish(r *jetstream.RePublish) string {
	switch {
	case r == nil:
		return "none"
	case r.HeadersOnly:
		return r.Source + " → " + r.Destination + " (headers only)"
	}
	return r.Source + " → " + r.Destination
}
