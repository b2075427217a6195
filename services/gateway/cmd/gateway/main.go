// Command gateway serves the Credits API over HTTP against a NATS JetStream cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/services/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv config.Getenv, stdout io.Writer) (err error) {
	cfg, err := gateway.LoadConfig(getenv)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(stdout, cfg.Log)
	tel, err := telemetry.Start(ctx, getenv, "gateway")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tel.Shutdown(ctx)) }()
	nc, err := bus.Connect(ctx, cfg.NATS, "gateway")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	err = gateway.Run(ctx, cfg, gateway.Deps{JS: js, Log: log, Tracer: tel.Tracer, Meter: tel.Meter, Metrics: tel.Metrics})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // stopped while still starting: a shutdown, not a failure
	}
	return err
}
