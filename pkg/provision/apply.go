package provision

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
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
		want := it.Stream
		if it.NeverShorten {
			want.MaxAge = longer(have.CachedInfo().Config.MaxAge, want.MaxAge)
		}
		cur := have.CachedInfo().Config
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
		want := bucketStream(cur, it)
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
		want := objectsStream(cur, it)
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
		_, err = bus.Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return js.CreateOrUpdateConsumer(ctx, it.On, it.Consumer)
		})
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

// bucketStream is the configuration the stream behind a bucket has once as planned: the
// key-value API's own settings kept, ours applied, direct reads off for a bucket read from
// its leader, and nothing that reaches other streams.
func bucketStream(cur jetstream.StreamConfig, it Item) jetstream.StreamConfig {
	want := cur
	b := it.Bucket
	want.Description, want.MaxAge, want.Replicas, want.Storage = b.Description, b.TTL, b.Replicas, b.Storage
	want.MaxMsgsPerSubject = int64(b.History)
	if it.LeaderReads {
		want.AllowDirect = false
	}
	clean(&want)
	return want
}

func objectsStream(cur jetstream.StreamConfig, it Item) jetstream.StreamConfig {
	want := cur
	o := it.Objects
	want.Description, want.Replicas, want.Storage = o.Description, o.Replicas, o.Storage
	clean(&want)
	return want
}

// clean takes out of a configuration what would make the stream read or write others.
func clean(c *jetstream.StreamConfig) {
	c.Sources, c.Mirror, c.RePublish, c.SubjectTransform = nil, nil, nil, nil
}

// longer is the longer of two age limits, zero being forever.
func longer(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}
