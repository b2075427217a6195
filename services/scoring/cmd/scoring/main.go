// Command scoring decides what the bank approves for each accepted search.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/services/scoring"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scoring:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv config.Getenv, stdout io.Writer) error {
	cfg, err := scoring.LoadConfig(getenv)
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, cfg.NATS, "scoring")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return scoring.Run(ctx, cfg, scoring.Deps{JS: js, Log: telemetry.NewLogger(stdout, cfg.Log)})
}
