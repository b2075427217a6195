//go:build linux

// Command composeup runs docker-compose.yml for real and checks what a user of it sees:
// every service built from the Dockerfile, started, healthy and wired to the others, the
// integration checker (cmd/yacheck) passing against the published API with the compose
// file's own test phones and a bearer token, a search's trace in Jaeger with the spans of
// the gateway, scoring and offers, and nothing left behind by `down`: no container, network
// or volume of the run. ./test.sh runs it after the Go tests; it exits 1 on any failure and
// never skips.
//
// What a laptop pulls from registries, it makes here, because no registry is reachable
// where the tests run (docs/testing.md, "The compose deployment"):
//
//   - the Docker engine: the Docker host's if one answers, else Debian's docker.io,
//     installed if missing and started as a private daemon under the cache directory
//     (root only), stopped again at the end;
//
//   - docker compose: built from the Go module proxy at the version pinned in
//     pinned/compose/go.mod, and cached;
//
//   - the Dockerfile's base images: a builder made of this machine's Go toolchain, a shell
//     and the modules the build needs, and a runtime image of CA certificates and a nonroot
//     user (distroless static's content), given as BUILDER_IMAGE and RUNTIME_IMAGE; the
//     images are then built from the Dockerfile with BuildKit exactly as the compose file's
//     build sections say;
//
//   - nats-server and Jaeger: the releases the compose file names, built from their Go
//     modules (nats-server at pkg/go.mod's version, Jaeger at pinned/jaeger/go.mod's) with
//     busybox for the health checks' wget, given as NATS_IMAGE and JAEGER_IMAGE.
//
// Usage:
//
//	go run ./tools/composeup                  # what ./test.sh runs
//	go run ./tools/composeup -keep            # leave the stack up to look at it
//	go run ./tools/composeup -file broken.yml # another compose file
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "composeup:", err)
		os.Exit(2)
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "composeup: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("composeup: ok")
}

type options struct {
	root    string        // the repository
	file    string        // the compose file to run
	cache   string        // built programs, the private engine's images and build cache
	keep    bool          // leave the stack up
	timeout time.Duration // for the whole run
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("composeup", flag.ContinueOnError)
	root := fs.String("root", ".", "the repository's root")
	file := fs.String("file", "", "the compose file (default docker-compose.yml at the root)")
	cache := fs.String("cache", "", "where built programs and the private engine's data are kept (default the user's cache directory)")
	keep := fs.Bool("keep", false, "leave the stack up at the end (and the private engine running)")
	timeout := fs.Duration("timeout", 25*time.Minute, "for the whole run")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{keep: *keep, timeout: *timeout}
	var err error
	if o.root, err = filepath.Abs(*root); err != nil {
		return options{}, err
	}
	if _, err := os.Stat(filepath.Join(o.root, "go.work")); err != nil {
		return options{}, fmt.Errorf("-root %s: not the repository (no go.work)", o.root)
	}
	o.file = *file
	if o.file == "" {
		o.file = filepath.Join(o.root, "docker-compose.yml")
	}
	if o.file, err = filepath.Abs(o.file); err != nil {
		return options{}, err
	}
	o.cache = *cache
	if o.cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return options{}, fmt.Errorf("no cache directory (set -cache): %w", err)
		}
		o.cache = filepath.Join(dir, "yacredits-composeup")
	}
	return o, nil
}

// run is the whole test. Each step prints a line when it ends, with its time, so that a
// slow one is named in CI's log.
func run(ctx context.Context, o options) (err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := os.MkdirAll(o.cache, 0o700); err != nil {
		return err
	}
	start := time.Now()
	step := func(name string, f func() error) error {
		t := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("composeup: %-44s %6.1fs\n", name, time.Since(t).Seconds())
		return nil
	}
	defer func() {
		if err == nil {
			fmt.Printf("composeup: all steps in %.0fs\n", time.Since(start).Seconds())
		}
	}()

	// The programs first: they need no engine.
	var progs programs
	if err := step("docker compose, nats-server, Jaeger built", func() (err error) { progs, err = buildPrograms(ctx, o); return err }); err != nil {
		return err
	}
	if err := checkVersions(o.root, o.file, progs); err != nil {
		return err
	}
	var eng *engine
	if err := step("Docker engine", func() (err error) { eng, err = startEngine(ctx, o.cache, o.keep); return err }); err != nil {
		return err
	}
	defer func() {
		if o.keep {
			eng.keep(o.cache)
		}
		if stopErr := eng.stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("stopping the engine: %w", stopErr)
		}
	}()
	var bases baseImages
	if err := step("base images made", func() (err error) { bases, err = makeImages(ctx, eng, o, progs); return err }); err != nil {
		return err
	}
	s, err := newStack(ctx, eng, o, progs, bases)
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.Remove(s.envFile) // its secrets: gone whatever happens next
	}
	if err := step("images built from the Dockerfile", func() error { return s.build(ctx) }); err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Printf("composeup: left up as project %s (-keep); env file %s\n", s.project, s.envFile)
			return
		}
		// Down even when the run was interrupted: a context of its own.
		downCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if downErr := step("down, nothing left", func() error { return s.down(downCtx) }); downErr != nil && err == nil {
			err = downErr
		}
	}()
	if err := step("up, every service healthy", func() error { return s.up(ctx) }); err != nil {
		s.dumpLogs(ctx)
		return err
	}
	if err := step("yacheck against the published API", func() error { return s.yacheck(ctx) }); err != nil {
		s.dumpLogs(ctx)
		return err
	}
	if err := step("a search's trace in Jaeger", func() error { return s.traced(ctx) }); err != nil {
		s.dumpLogs(ctx)
		return err
	}
	return nil
}
