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
	"time"

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
	tp, shutdownTracing, err := telemetry.NewTracerProvider(ctx, getenv, "gateway")
	if err != nil {
		return err
	}
	defer func() {
		// Last, so the spans of the final requests are sent too; with its own deadline, as
		// ctx is already cancelled by then.
		flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = errors.Join(err, shutdownTracing(flush))
	}()
	mp, metrics, err := telemetry.NewMeterProvider("gateway")
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, cfg.NATS, "gateway")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return gateway.Run(ctx, cfg, gateway.Deps{JS: js, Log: log, Tracer: tp, Meter: mp, Metrics: metrics})
}
