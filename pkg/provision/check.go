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

// Drift are the settings that may differ from the plan without a service working otherwise
// than designed: how long things are kept, how many copies, descriptions, compression, the
// de-duplication window, an ack wait and a size bound. A difference in any other is a
// service's to refuse.
var Drift = map[string]bool{"max_age": true, "num_replicas": true, "description": true, "compression": true,
	"duplicate_window": true, "ack_wait": true, "max_bytes": true}

// Report is what Inspect found: Blocking (an item missing, or set so that a service would
// work otherwise than designed, or reach other streams) and Drifted (a setting of Drift),
// each as "stream LOAN: max_age: have 1h0m0s, want 15m0s".
type Report struct {
	Blocking, Drifted []string
}

// Inspect reads each item and compares it with the plan, changing nothing. Settings the
// items leave unknown (zero) are not compared.
func Inspect(ctx context.Context, js jetstream.JetStream, items ...Item) (Report, error) {
	var (
		rep  Report
		errs []error
	)
	for _, it := range items {
		d, err := check(ctx, js, it)
		if errors.Is(err, errMissing) {
			rep.Blocking = append(rep.Blocking, it.Name()+": missing")
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", it.Name(), err))
			continue
		}
		for _, diff := range d {
			field, _, _ := strings.Cut(diff, ":")
			if Drift[field] {
				rep.Drifted = append(rep.Drifted, it.Name()+": "+diff)
			} else {
				rep.Blocking = append(rep.Blocking, it.Name()+": "+diff)
			}
		}
	}
	return rep, errors.Join(errs...)
}

// Check is Inspect for a service: an error naming what blocks it (wrapping
// bus.ErrNotProvisioned), or what kept it from looking; a drifted setting is not one. The
// services call it at start and from their readiness, and are not ready until the
// provisioner has made things as planned; they never change them.
func Check(ctx context.Context, js jetstream.JetStream, items ...Item) error {
	rep, err := Inspect(ctx, js, items...)
	if err != nil {
		return err
	}
	if len(rep.Blocking) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(rep.Blocking, "; "), bus.ErrNotProvisioned)
	}
	return nil
}

var errMissing = errors.New("missing")

func check(ctx context.Context, js jetstream.JetStream, it Item) ([]string, error) {
	if it.Kind == Consumer {
		c, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return js.Consumer(ctx, it.On, it.Consumer.Durable)
		})
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, errMissing
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
		return nil, errMissing
	}
	if err != nil {
		return nil, err
	}
	cur := s.CachedInfo().Config
	return bus.StreamDiff(cur, wanted(cur, it)), nil
}

// Probe is a readiness check that nothing of the items blocks the service; a drifted
// setting is named in its detail.
func Probe(js jetstream.JetStream, items ...Item) health.Check {
	return health.Check{Name: "provisioned", Probe: func(ctx context.Context) (string, error) {
		rep, err := Inspect(ctx, js, items...)
		if err != nil {
			return "", err
		}
		if len(rep.Blocking) > 0 {
			return "", fmt.Errorf("%s: %w", strings.Join(rep.Blocking, "; "), bus.ErrNotProvisioned)
		}
		if len(rep.Drifted) > 0 {
			// Ready: nothing this service relies on differs. Said, for the provisioner's
			// next pass or an operator to settle.
			return fmt.Sprintf("%d streams, buckets and consumers; settings the plan sets otherwise: %s",
				len(items), strings.Join(rep.Drifted, "; ")), nil
		}
		return fmt.Sprintf("%d streams, buckets and consumers as planned", len(items)), nil
	}}
}
