package provisioncmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctl(ctx context.Context, env map[string]string, args ...string) (string, error) {
	var out bytes.Buffer
	err := Run(ctx, args, func(k string) string { return env[k] }, &out, io.Discard)
	return out.String(), err
}

// An operator's view: -check names what is missing and exits 1; a pass makes it and says
// what it made; a second pass changes nothing; -check then says all is as planned.
func TestCheckApplyCheck(t *testing.T) {
	srv := natstest.RunServer(t)
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	ctx := natstest.Context(t, 30*time.Second)

	out, err := ctl(ctx, env, "-check")
	if err == nil || !strings.Contains(out, "stream LOAN: missing") || !strings.Contains(out, "consumer KV_searches/audit: missing") {
		t.Fatalf("-check on an empty server: %v\n%s", err, out)
	}
	out, err = ctl(ctx, env)
	if err != nil || !strings.Contains(out, "created stream AUDIT\n") || !strings.Contains(out, "created consumer LOAN/scoring\n") ||
		!strings.HasSuffix(out, "as planned: 17 streams, buckets and consumers\n") {
		t.Fatalf("first pass: %v\n%s", err, out)
	}
	if out, err = ctl(ctx, env); err != nil || out != "as planned: 17 streams, buckets and consumers\n" {
		t.Fatalf("second pass: %v\n%q", err, out)
	}
	if out, err = ctl(ctx, env, "-check"); err != nil || out != "as planned: 17 streams, buckets and consumers\n" {
		t.Fatalf("-check after provisioning: %v\n%q", err, out)
	}
	// A setting the provisioner reads is the one the services read.
	env["SEARCH_RETENTION"] = "48h"
	if out, err = ctl(ctx, env, "-check"); err == nil || !strings.Contains(out, "bucket searches: max_age: have 24h0m0s, want 48h0m0s (drift") {
		t.Fatalf("-check with another retention: %v\n%s", err, out)
	}
}

// -watch keeps things as planned: what a broker restart lost comes back, and its /readyz says
// so.
func TestWatchRemakesWhatARestartLost(t *testing.T) {
	srv := natstest.RunServer(t)
	addr := natstest.FreeAddr(t)
	env := map[string]string{"NATS_URL": srv.ClientURL(), "HEALTH_ADDR": addr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := ctl(ctx, env, "-watch", "200ms"); done <- err }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("-watch: %v", err)
		}
	}()
	ready := func() error {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", res.StatusCode)
		}
		return nil
	}
	natstest.Eventually(t, 10*time.Second, ready)
	_, js := natstest.JetStream(t, srv.ClientURL())
	srv.Restart()
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, err := js.Consumer(context.Background(), contracts.StreamLoan, contracts.ConsumerScoring); err != nil {
			return err
		}
		return ready()
	})
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"-check", "-watch", "1s"}, {"-watch", "1ms"}, {"-watch", "-1s"}, {"-bogus"}} {
		if _, err := ctl(context.Background(), nil, args...); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
