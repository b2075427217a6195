// Package provisioncmd is yactl provision: it makes every stream, bucket, object store and
// durable consumer of the system exist as package provision plans them, with the one NATS
// user allowed to (provision, in deploy/k8s/base/nats/users.conf). The services only check
// and bind; none may create or change a stream.
//
//	yactl provision                 apply the plan once: print each change, exit 1 on a failure
//	yactl provision -check          change nothing: print what is missing or differs, exit 1 if anything
//	                                (a difference marked drift is one the services work on)
//	yactl provision -watch 5s       apply, then again every interval and after every reconnect
//
// -watch is the provisioner's Deployment (and compose service): the LOAN streams are in
// memory, and a restart of every broker at once loses them with their consumers; the next
// pass puts them back, and the gateway's sweeper sends the pending searches again. With
// HEALTH_ADDR set it serves /healthz and /readyz (ready once a pass has left everything as
// planned). The plan's settings are read from the variables the services read: NATS_REPLICAS,
// SEARCH_RETENTION, CONVERSIONS_RETENTION, AUDIT_RETENTION, DELIVERY_ACK_WAIT. Exit status:
// 0 success, 1 failure, 2 usage.
package provisioncmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/telemetry"
)

var errUsage = cli.Usage("yactl provision [-check | -watch INTERVAL]")

// Run is the command.
func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "change nothing: print what is missing or differs from the plan")
	watch := fs.Duration("watch", 0, "apply again every interval and after every reconnect, until stopped")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || (*check && *watch != 0) || *watch < 0 ||
		(*watch != 0 && *watch < 100*time.Millisecond) {
		return errUsage
	}
	cfg, err := provision.LoadConfig(getenv)
	if err != nil {
		return err
	}
	plan := provision.Plan(cfg.Settings)
	reconnected := make(chan struct{}, 1)
	nc, err := bus.Connect(ctx, cfg.NATS, "yactl provision", nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	}))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	switch {
	case *check:
		rep, err := provision.Inspect(ctx, js, plan...)
		if err != nil {
			return err
		}
		for _, b := range rep.Blocking {
			fmt.Fprintln(stdout, b)
		}
		for _, d := range rep.Drifted {
			fmt.Fprintln(stdout, d+" (drift: the services work on)")
		}
		if len(rep.Blocking)+len(rep.Drifted) > 0 {
			return errors.New("not as planned")
		}
		fmt.Fprintf(stdout, "as planned: %d streams, buckets and consumers\n", len(plan))
		return nil
	case *watch == 0:
		done, err := provision.Apply(ctx, js, plan)
		for _, d := range done {
			fmt.Fprintln(stdout, d)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "as planned: %d streams, buckets and consumers\n", len(plan))
		return nil
	}
	log := telemetry.NewLogger(stdout, cfg.Log).With().Str("service", "provisioner").Logger()
	return keep(ctx, js, plan, *watch, reconnected, cfg.HealthAddr, log)
}

// keep applies the plan every interval and after every reconnect until ctx ends.
func keep(ctx context.Context, js jetstream.JetStream, plan []provision.Item, every time.Duration,
	reconnected <-chan struct{}, healthAddr string, log zerolog.Logger) error {
	var last atomic.Pointer[error]
	notYet := errors.New("no pass yet")
	last.Store(&notYet)
	ready := health.Func("provisioned", func() error { return *last.Load() })
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return health.Serve(gctx, healthAddr, health.Handler(health.List(ready), nil)) })
	grp.Go(func() error {
		var logged string
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			done, err := provision.Apply(gctx, js, plan)
			if len(done) > 0 {
				log.Info().Strs("changes", done).Msg("provisioned")
			}
			if err != nil && gctx.Err() == nil && err.Error() != logged {
				log.Warn().Err(err).Msg("not everything is as planned yet; trying again")
			}
			if err == nil && logged != "" {
				log.Info().Msg("everything as planned again")
			}
			if err != nil {
				logged = err.Error()
			} else {
				logged = ""
			}
			last.Store(&err)
			select {
			case <-gctx.Done():
				return nil
			case <-tick.C:
			case <-reconnected:
			}
		}
	})
	return grp.Wait()
}
