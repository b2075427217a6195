package provision

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/capacity"
)

// Apply makes every item of plan exist as planned: what is missing is created, what differs
// is updated, what is already as planned costs one look-up (on a cluster every create or
// update is a proposal of the meta leader, which a provisioner looping every few seconds
// must not flood). It returns what it did, one line per change. A memory stream whose
// retention changed is deleted and made again (JetStream cannot change a retention to or
// from a work queue), which loses only work its records re-derive. An item that cannot be
// made stops nothing else: every error is returned, joined.
func Apply(ctx context.Context, js jetstream.JetStream, plan []Item) ([]string, error) {
	var (
		done []string
		errs []error
	)
	for _, it := range plan {
		did, err := apply(ctx, js, it)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", it.Name(), err))
			continue
		}
		if did != "" {
			done = append(done, did+" "+it.Name())
		}
	}
	return done, errors.Join(errs...)
}

func apply(ctx context.Context, js jetstream.JetStream, it Item) (string, error) {
	have, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, it.StreamName()) })
	missing := errors.Is(err, jetstream.ErrStreamNotFound)
	if err != nil && !missing {
		return "", err
	}
	switch it.Kind {
	case Stream:
		if missing {
			return "created", create(ctx, func(ctx context.Context) error { _, err := js.CreateStream(ctx, it.Stream); return err }, js, it)
		}
		cur := have.CachedInfo().Config
		want := wanted(cur, it)
		want.MaxBytes = bound(*have.CachedInfo(), want, it.NeverShorten)
		if len(bus.StreamDiff(cur, want)) == 0 {
			return "", nil
		}
		if cur.Retention != want.Retention && want.Storage == jetstream.MemoryStorage {
			if _, err := bus.Declare(ctx, func(ctx context.Context) (struct{}, error) {
				return struct{}{}, js.DeleteStream(ctx, want.Name)
			}); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return "", err
			}
			_, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateStream(ctx, want) })
			return "replaced", err
		}
		// An update replaces the whole configuration: sources, a mirror, republish or a
		// transform someone added are dropped with it.
		_, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, want) })
		return "updated", err
	case Bucket:
		if missing {
			if err := create(ctx, func(ctx context.Context) error { _, err := js.CreateKeyValue(ctx, it.Bucket); return err }, js, it); err != nil {
				return "", err
			}
			if have, err = bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, it.StreamName()) }); err != nil {
				return "", err
			}
		}
		// The key-value API makes the stream; from then on only its settings are updated,
		// on the stream itself (the API would turn direct reads back on).
		cur := have.CachedInfo().Config
		want := wanted(cur, it)
		want.MaxBytes = bound(*have.CachedInfo(), want, it.NeverShorten)
		if reflect.DeepEqual(cur, want) {
			if missing {
				return "created", nil
			}
			return "", nil
		}
		if _, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, want) }); err != nil {
			return "", err
		}
		if missing {
			return "created", nil
		}
		return "updated", nil
	case Objects:
		if missing {
			return "created", create(ctx, func(ctx context.Context) error { _, err := js.CreateObjectStore(ctx, it.Objects); return err }, js, it)
		}
		cur := have.CachedInfo().Config
		want := wanted(cur, it)
		want.MaxBytes = bound(*have.CachedInfo(), want, it.NeverShorten)
		if reflect.DeepEqual(cur, want) {
			return "", nil
		}
		_, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, want) })
		return "updated", err
	case Consumer:
		if missing {
			return "", fmt.Errorf("its stream %s does not exist", it.On)
		}
		c, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return js.Consumer(ctx, it.On, it.Consumer.Durable)
		})
		if err == nil && len(bus.ConsumerDiff(c.CachedInfo().Config, it.Consumer)) == 0 {
			return "", nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return "", err
		}
		did := "updated"
		if err != nil {
			did = "created"
		}
		upsert := func(ctx context.Context) (jetstream.Consumer, error) {
			return js.CreateOrUpdateConsumer(ctx, it.On, it.Consumer)
		}
		_, err = bus.Declare(ctx, upsert)
		var apiErr *jetstream.APIError
		if did == "updated" && errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeConsumerCreate &&
			strings.Contains(apiErr.Description, "can not be updated") {
			// A setting JetStream does not let change (the ack or deliver policy, pull or
			// push): the consumer is made again. Its messages are delivered again from where
			// its policy starts, which every consumer of ours takes (each handling is
			// idempotent, and the audit trail and the delivery keep the first).
			if _, err := bus.Declare(ctx, func(ctx context.Context) (struct{}, error) {
				return struct{}{}, js.DeleteConsumer(ctx, it.On, it.Consumer.Durable)
			}); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return "", err
			}
			did = "replaced"
			_, err = bus.Declare(ctx, upsert)
		}
		return did, err
	}
	return "", fmt.Errorf("unknown kind %d", it.Kind)
}

// create makes a missing item; one made meanwhile by another provisioner, or a create that
// went unanswered (which happens to creates racing on a cluster), is looked up again.
func create(ctx context.Context, call func(context.Context) error, js jetstream.JetStream, it Item) error {
	_, err := bus.Declare(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, call(ctx) })
	if err == nil {
		return nil
	}
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, context.DeadlineExceeded) {
		_, err = bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, it.StreamName()) })
	}
	return err
}

// wanted is the configuration the stream an item is (or keeps its data in) has once as
// planned, given what it has now (cur):
//   - a stream: the plan's configuration;
//   - a bucket or an object store: what its API made, with the plan's settings, direct reads
//     off for a bucket read from its leader, and the limits that would delete data (max_msgs,
//     max_bytes, max_msg_size, discard) back to the API's own;
//   - for every one: nothing that reaches other streams (sources, a mirror, a subject
//     transform) and no republish but the plan's own (the searches bucket's, to the gateway), never fewer replicas than it has (scaling a store down is an
//     administrator's act, not what a provisioner run without NATS_REPLICAS should do), and
//     for NeverShorten never a shorter age; what the plan's settings leave unknown (zero)
//     kept as it is; and a de-duplication window no longer than the age.
func wanted(cur jetstream.StreamConfig, it Item) jetstream.StreamConfig {
	var want jetstream.StreamConfig
	switch it.Kind {
	case Bucket:
		b := it.Bucket
		want = cur
		want.Subjects = []string{"$KV." + b.Bucket + ".>"}
		want.Description, want.MaxAge, want.Replicas, want.Storage = b.Description, b.TTL, b.Replicas, b.Storage
		want.MaxMsgsPerSubject = int64(b.History)
		want.Retention, want.Discard, want.MaxMsgs, want.MaxBytes, want.MaxMsgSize = jetstream.LimitsPolicy, jetstream.DiscardNew, -1, b.MaxBytes, -1
		want.Sealed, want.NoAck, want.DenyDelete, want.DenyPurge, want.AllowRollup = false, false, true, false, true
		if it.LeaderReads {
			want.AllowDirect = false
		}
	case Objects:
		o := it.Objects
		want = cur
		want.Subjects = []string{"$O." + o.Bucket + ".C.>", "$O." + o.Bucket + ".M.>"}
		want.Description, want.Replicas, want.Storage = o.Description, o.Replicas, o.Storage
		want.Retention, want.Discard, want.MaxMsgs, want.MaxBytes, want.MaxMsgSize = jetstream.LimitsPolicy, jetstream.DiscardNew, -1, o.MaxBytes, -1
		want.Sealed, want.NoAck, want.AllowRollup = false, false, true
	default:
		want = it.Stream
	}
	if it.Kind == Bucket || it.Kind == Objects {
		// A bucket's or object store's settings start from what the stream has: the features
		// neither sets are set back to off here, so that the check names them and a pass
		// undoes what the server lets it (bus.StreamDiff says why each matters). A plain
		// stream's plan leaves them off already.
		want.MaxConsumers, want.PersistMode, want.MirrorDirect, want.DiscardNewPerSubject = -1, jetstream.DefaultPersistMode, false, false
		want.AllowMsgTTL, want.SubjectDeleteMarkerTTL = false, 0
		want.AllowMsgSchedules, want.AllowMsgCounter, want.AllowAtomicPublish, want.AllowBatchPublish = false, false, false, false
	}
	want.Sources, want.Mirror, want.RePublish, want.SubjectTransform = nil, nil, nil, nil
	switch it.Kind {
	case Bucket:
		want.RePublish = it.Bucket.RePublish
	case Stream:
		want.RePublish = it.Stream.RePublish
	}
	if want.MaxBytes == 0 { // not known to whoever checks: not compared
		want.MaxBytes = cur.MaxBytes
	}
	if !it.ageKnown {
		want.MaxAge = cur.MaxAge
	} else if it.NeverShorten {
		want.MaxAge = longer(cur.MaxAge, want.MaxAge)
	}
	want.Replicas = max(want.Replicas, cur.Replicas)
	if want.MaxAge > 0 && want.Duplicates > want.MaxAge {
		want.Duplicates = want.MaxAge
	}
	return want
}

// bound is the max_bytes a pass sets: the plan's, except that a pass never bounds or lowers
// a stream under what it keeps, nor so near it that it would be filling at once
// (capacity.FillingAt: JetStream drops the oldest messages to fit a lowered bound, whatever
// the discard policy, and one near it would have the gateway shed with no one warned), and never lowers an existing bound of a stream it never shortens (the audit
// trail, the conversions: their room is an administrator's decision). A stream with no
// bound yet, an upgraded one, is bounded when it keeps less than that. Anything left is
// an administrator's act (docs/operating.md, "Storage"); meanwhile the services' checks
// name the difference as drift.
func bound(cur jetstream.StreamInfo, want jetstream.StreamConfig, neverShorten bool) int64 {
	lowers := want.MaxBytes > 0 && (cur.Config.MaxBytes <= 0 || want.MaxBytes < cur.Config.MaxBytes)
	switch {
	case !lowers:
		return want.MaxBytes
	case capacity.Used(cur.State.Bytes, want.MaxBytes) >= capacity.FillingAt:
		return cur.Config.MaxBytes
	case neverShorten && cur.Config.MaxBytes > 0:
		return cur.Config.MaxBytes
	}
	return want.MaxBytes
}

// longer is the longer of two age limits, zero being forever.
func longer(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}
