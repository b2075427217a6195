// Command yactl is the operators' one tool: the catalog, the credit policy and the ПСК ceiling
// table; a past search explained and replayed; the proposal links' keys; the conversions; the
// pre-approval import. One binary in natscli's shape: one help (yactl help), one set of
// connection flags and variables, the same exit codes for every command (0 done, 1 failed, 2 a
// command line it does not understand).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/demobank/yacredits/cmd/yactl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yactl:", err)
	}
	os.Exit(exitCode(err))
}

// exitCode is the same for every command: 0 done, 2 a command line it does not understand,
// 1 any other failure.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, cli.ErrUsage):
		return 2
	default:
		return 1
	}
}
