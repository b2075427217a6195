// Command conversions records the contracts the bank reports and delivers them to Yandex.
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
	"github.com/demobank/yacredits/services/conversions"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "conversions:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv config.Getenv, stdout io.Writer) (err error) {
	cfg, err := conversions.LoadConfig(getenv)
	if err != nil {
		return err
	}
	tel, err := telemetry.Start(ctx, getenv, "conversions")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tel.Shutdown(ctx)) }()
	nc, err := bus.Connect(ctx, cfg.NATS, "conversions")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	err = conversions.Run(ctx, cfg, conversions.Deps{JS: js, Log: telemetry.NewLogger(stdout, cfg.Log),
		Meter: tel.Meter, Metrics: tel.Metrics})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}
