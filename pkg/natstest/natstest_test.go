package natstest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerKeepsFileStateAcrossRestart(t *testing.T) {
	s := RunServer(t)
	_, js := JetStream(t, s.ClientURL())
	ctx := Context(t, 30*time.Second)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	// Each try has its own short deadline: a request sent while the client reconnects, or
	// while the restarted server still recovers its streams, is never answered, and would
	// otherwise hold the whole test's deadline (seen under a loaded CI run).
	Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		e, err := kv.Get(ctx, "k")
		if err != nil {
			return err
		}
		if string(e.Value()) != "v" {
			return errors.New("value changed: " + string(e.Value()))
		}
		return nil
	})
}

func TestClusterReplicatesAndSurvivesANodeRestart(t *testing.T) {
	c := RunCluster(t, 3)
	_, js := JetStream(t, c.URLs())
	ctx := Context(t, 60*time.Second)
	var kv jetstream.KeyValue
	Eventually(t, 20*time.Second, func() (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3})
		return err
	})
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := kv.Put(ctx, "k2", []byte("v2"))
		return err
	})
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("after restart: %v %v", e, err)
	}
	// The restarted node catches up in the background. Shut down while it still recovers
	// the bucket, nats-server can leave that store's goroutines running, which goleak then
	// reports (seen once under a loaded CI run): end once every replica is current.
	Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "KV_b")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("replicas %+v", info.Cluster)
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("replica %s not current", r.Name)
			}
		}
		return nil
	})
}
