package bus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeclareTimeout bounds one declaration call (looking up, creating or updating a stream,
// bucket or consumer). On a cluster, concurrent declarations of one stream by replicas
// starting together can go unanswered; a short wait and another try (which then finds the
// stream there) beats waiting out a long timeout.
const DeclareTimeout = 2 * time.Second

// Declare runs one declaration call with its own DeclareTimeout.
func Declare[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, DeclareTimeout)
	defer cancel()
	return call(ctx)
}

// EnsureKeyValue binds to the bucket cfg describes, creating it if it does not exist and
// updating it if its settings differ; a bucket already as configured costs one look-up and
// no change (every create or update is a proposal of the cluster's meta leader).
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, cfg.Bucket) })
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		kv, err = Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) })
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, context.DeadlineExceeded) { // raced, or unanswered
			kv, err = Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, cfg.Bucket) })
		}
	case err == nil:
		var st jetstream.KeyValueStatus
		st, err = Declare(ctx, kv.Status)
		if err == nil && !sameBucket(st.Config(), cfg) {
			kv, err = Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.UpdateKeyValue(ctx, cfg) })
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// EnsureLeaderReadBucket is EnsureKeyValue for a bucket whose reads must come from its
// stream's leader. A replicated bucket lets any replica answer a "direct get", and a
// lagging one shows an old revision: a finished record as unfinished, a stale revision fed
// to compare-and-set over and over. The client decides at bind time, from the stream's
// AllowDirect, which the KV API always turns on; so the bucket is created through it once,
// and from then on only its stream's settings are updated (retention, replicas), keeping
// AllowDirect off. Bind other handles with BindLeaderRead.
func EnsureLeaderReadBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	name := "KV_" + cfg.Bucket
	streamOf := func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, name) }
	stream, err := Declare(ctx, streamOf)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, cfg) })
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
		}
		stream, err = Declare(ctx, streamOf) // raced, or unanswered: look again
	}
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
	}
	have := stream.CachedInfo().Config
	want := have
	want.AllowDirect, want.MaxAge, want.Replicas = false, cfg.TTL, cfg.Replicas
	if !reflect.DeepEqual(have, want) {
		if _, err := Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, want) }); err != nil {
			return nil, fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
		}
	}
	kv, err := Declare(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, cfg.Bucket) })
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// ErrDirectReads is BindLeaderRead's answer for a bucket whose owner has not yet switched
// its reads to the leader (or has not created it).
var ErrDirectReads = errors.New("bucket not created yet, or still read from any replica")

// BindLeaderRead binds to a bucket EnsureLeaderReadBucket made, once its reads come from
// the leader: a handle bound before would keep asking replicas that no longer answer.
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

// sameBucket compares the settings we declare (the server fills in others).
func sameBucket(have, want jetstream.KeyValueConfig) bool {
	return have.History == want.History && have.TTL == want.TTL && have.Storage == want.Storage &&
		have.Replicas == want.Replicas && have.Description == want.Description && have.Compression == want.Compression
}

// ensureConsumer binds to the durable consumer cfg describes on stream, creating or
// updating it only when it is missing or set differently.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) { return js.Consumer(ctx, stream, cfg.Durable) })
	if err == nil && sameConsumer(c.CachedInfo().Config, cfg) {
		return c, nil
	}
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return js.CreateOrUpdateConsumer(ctx, stream, cfg)
	})
}

func sameConsumer(have, want jetstream.ConsumerConfig) bool {
	return have.FilterSubject == want.FilterSubject && have.AckPolicy == want.AckPolicy && have.AckWait == want.AckWait &&
		have.MaxDeliver == want.MaxDeliver && slices.Equal(have.BackOff, want.BackOff) &&
		have.MaxAckPending == want.MaxAckPending && have.DeliverPolicy == want.DeliverPolicy
}

// EnsureStream creates the stream cfg describes, or brings the settings we declare up to
// date, racing other replicas safely.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return ensureStream(ctx, js, cfg)
}

// EnsureConsumer binds to the durable consumer cfg describes on stream, creating or updating
// it only when it is missing or set differently.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return ensureConsumer(ctx, js, stream, cfg)
}
