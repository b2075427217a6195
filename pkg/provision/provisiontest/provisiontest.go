// Package provisiontest provisions for tests, as the provisioner does before the services
// start.
package provisiontest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/search"
)

// Apply makes everything the plan holds for s; on a cluster it tries again until the meta
// leader answers.
func Apply(t testing.TB, js jetstream.JetStream, s provision.Settings) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := provision.Apply(ctx, js, provision.Plan(s))
		return err
	})
}

// Defaults is Apply with every setting at its default.
func Defaults(t testing.TB, js jetstream.JetStream, replicas int) {
	t.Helper()
	Apply(t, js, provision.Defaults(replicas))
}

// Searches is Defaults, then the searches bucket bound to as the services bind to it.
func Searches(t testing.TB, js jetstream.JetStream, replicas int, o search.Options) (*search.Store, error) {
	t.Helper()
	Defaults(t, js, replicas)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return search.Open(ctx, js, o)
}
