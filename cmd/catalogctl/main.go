// Command catalogctl checks product catalogs and changes the one the offers service prices
// with. The catalog lives in the JetStream bucket contracts.BucketCatalog; every running
// offers replica watches it and takes a new catalog within a second, without a restart. The
// file format is documented in package services/offers/catalog.
//
//	catalogctl validate FILE    check a catalog file and list every problem
//	catalogctl put FILE         check it, then store it as the catalog in force
//	catalogctl get [REVISION]   print the stored catalog, or an earlier revision of it
//
// get writes the catalog exactly as it was put to standard output and its revision to
// standard error, so `catalogctl get 7 > old.json && catalogctl put old.json` rolls back.
// The bucket keeps the last few revisions. put and get connect with the services' NATS_*
// variables (NATS_URL, NATS_USER, NATS_PASSWORD, NATS_REPLICAS, NATS_CONNECT_TIMEOUT).
//
// The exit status is 0 on success, 1 on failure (an invalid catalog included) and 2 for a
// command line it does not understand.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/pricing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "catalogctl:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: catalogctl validate FILE | put FILE | get [REVISION]")

// run carries out one command. Problems with a catalog go to stderr one per line; the
// returned error sums them up.
func run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch {
	case cmd == "validate" && len(rest) == 1:
		c, _, err := check(rest[0], stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: valid, %d products\n", rest[0], len(c.Products))
		return nil
	case cmd == "put" && len(rest) == 1:
		return put(ctx, rest[0], getenv, stdout, stderr)
	case cmd == "get" && len(rest) <= 1:
		var revision uint64
		if len(rest) == 1 {
			r, err := strconv.ParseUint(rest[0], 10, 64)
			if err != nil || r == 0 {
				return fmt.Errorf("%w (REVISION is a positive whole number, not %q)", errUsage, rest[0])
			}
			revision = r
		}
		return get(ctx, revision, getenv, stdout, stderr)
	}
	return errUsage
}

// check reads and validates a catalog file, writing every problem to stderr.
func check(path string, stderr io.Writer) (*catalog.Catalog, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	c, err := pricing.ParseCatalog(data)
	var invalid *catalog.ValidationError
	switch {
	case errors.As(err, &invalid):
		for _, p := range invalid.Problems {
			fmt.Fprintf(stderr, "%s: %s\n", path, p)
		}
		return nil, nil, fmt.Errorf("%s: refused, %d problem(s)", path, len(invalid.Problems))
	case err != nil:
		// The file does not decode: there is no catalog yet to list problems of.
		return nil, nil, fmt.Errorf("%s: refused: %w", path, err)
	}
	return c, data, nil
}

func put(ctx context.Context, path string, getenv config.Getenv, stdout, stderr io.Writer) error {
	c, data, err := check(path, stderr)
	if err != nil {
		return err
	}
	return withJetStream(ctx, getenv, func(js jetstream.JetStream, cfg config.NATS) error {
		kv, err := offers.EnsureCatalogBucket(ctx, js, cfg.Replicas)
		if err != nil {
			return err
		}
		rev, err := kv.Put(ctx, contracts.CatalogKey, data)
		if err != nil {
			return fmt.Errorf("put catalog: %w", err)
		}
		fmt.Fprintf(stdout, "%s: put as revision %d, %d products\n", path, rev, len(c.Products))
		return nil
	})
}

func get(ctx context.Context, revision uint64, getenv config.Getenv, stdout, stderr io.Writer) error {
	return withJetStream(ctx, getenv, func(js jetstream.JetStream, _ config.NATS) error {
		kv, err := js.KeyValue(ctx, contracts.BucketCatalog)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return errors.New("no catalog yet: the catalog bucket does not exist (start the offers service or put one)")
		}
		if err != nil {
			return fmt.Errorf("open bucket %s: %w", contracts.BucketCatalog, err)
		}
		var e jetstream.KeyValueEntry
		if revision == 0 {
			e, err = kv.Get(ctx, contracts.CatalogKey)
		} else {
			e, err = kv.GetRevision(ctx, contracts.CatalogKey, revision)
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && revision != 0:
			return fmt.Errorf("revision %d is not in the bucket's history", revision)
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return errors.New("no catalog in the bucket (start the offers service or put one)")
		case err != nil:
			return fmt.Errorf("get catalog: %w", err)
		}
		if _, err := stdout.Write(e.Value()); err != nil {
			return err
		}
		if n := len(e.Value()); n > 0 && e.Value()[n-1] != '\n' {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stderr, "revision %d, put %s\n", e.Revision(), e.Created().UTC().Format(time.RFC3339))
		if _, err := pricing.ParseCatalog(e.Value()); err != nil {
			// Only a put around catalogctl can store one; the services refused it.
			fmt.Fprintf(stderr, "warning: revision %d is not a valid catalog, so the offers service does not price with it:\n", e.Revision())
			var invalid *catalog.ValidationError
			if !errors.As(err, &invalid) {
				invalid = &catalog.ValidationError{Problems: []string{err.Error()}}
			}
			for _, p := range invalid.Problems {
				fmt.Fprintf(stderr, "revision %d: %s\n", e.Revision(), p)
			}
		}
		return nil
	})
}

// withJetStream connects as the services do and calls fn.
func withJetStream(ctx context.Context, getenv config.Getenv, fn func(jetstream.JetStream, config.NATS) error) error {
	return bus.WithJetStream(ctx, getenv, "catalogctl", fn)
}
