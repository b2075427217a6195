package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/health"
)

// Check reads each item and says, for every one that is missing or differs from the plan,
// what: "stream LOAN: max_age: have 1h0m0s, want 15m0s". It changes nothing: the services
// call it at start and from their readiness, and report not ready until the provisioner
// has made things as planned. Settings a service does not know are not compared.
func Check(ctx context.Context, js jetstream.JetStream, items ...Item) error {
	var errs []error
	for _, it := range items {
		if d, err := check(ctx, js, it); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", it.Name(), err))
		} else if len(d) > 0 {
			errs = append(errs, fmt.Errorf("%s: %s: %w", it.Name(), strings.Join(d, "; "), bus.ErrNotProvisioned))
		}
	}
	return errors.Join(errs...)
}

func check(ctx context.Context, js jetstream.JetStream, it Item) ([]string, error) {
	if it.Kind == Consumer {
		c, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return js.Consumer(ctx, it.On, it.Consumer.Durable)
		})
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("missing: %w", bus.ErrNotProvisioned)
		}
		if err != nil {
			return nil, err
		}
		want := it.Consumer
		if !it.ageKnown {
			want.AckWait = c.CachedInfo().Config.AckWait
		}
		return bus.ConsumerDiff(c.CachedInfo().Config, want), nil
	}
	s, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, it.StreamName()) })
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("missing: %w", bus.ErrNotProvisioned)
	}
	if err != nil {
		return nil, err
	}
	cur := s.CachedInfo().Config
	var want jetstream.StreamConfig
	switch it.Kind {
	case Stream:
		want = it.Stream
		if it.NeverShorten {
			want.MaxAge = longer(cur.MaxAge, want.MaxAge)
		}
	case Bucket:
		want = bucketStream(cur, it)
	case Objects:
		want = objectsStream(cur, it)
	}
	if !it.ageKnown {
		want.MaxAge = cur.MaxAge
	}
	if want.Replicas == 0 {
		want.Replicas = cur.Replicas
	}
	d := bus.StreamDiff(cur, want)
	if it.Kind == Bucket {
		d = append(d, bus.Differences(
			bus.Field{Name: "max_msgs_per_subject", Have: cur.MaxMsgsPerSubject, Want: want.MaxMsgsPerSubject},
			bus.Field{Name: "allow_direct", Have: cur.AllowDirect, Want: want.AllowDirect},
		)...)
	}
	return d, nil
}

// Probe is a readiness check that the items are as planned.
func Probe(js jetstream.JetStream, items ...Item) health.Check {
	return health.Check{Name: "provisioned", Probe: func(ctx context.Context) (string, error) {
		if err := Check(ctx, js, items...); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d streams, buckets and consumers as planned", len(items)), nil
	}}
}
