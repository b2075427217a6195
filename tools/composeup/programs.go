//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// programs are the third-party programs the run needs, built from the Go module proxy.
type programs struct {
	compose string // docker compose (standalone: the plugin binary runs on its own)
	nats    string // nats-server, static
	jaeger  string // Jaeger v2 all-in-one, static
	// natsVersion and jaegerVersion are the module versions built: the stand-in images' tags.
	natsVersion, jaegerVersion string
}

// buildPrograms builds each program once per version: a binary is kept under the cache,
// named by the hash of the go.mod and go.sum it was built from and the Go version.
func buildPrograms(ctx context.Context, o options) (programs, error) {
	var p programs
	pinned := filepath.Join(o.root, "tools", "composeup", "pinned")
	var err error
	// Each pinned program is a module of its own, outside the workspace (GOWORK=off), so that
	// its dependencies are resolved as its authors resolved them and never mix with ours.
	if p.compose, err = buildProgram(ctx, o.cache, filepath.Join(pinned, "compose"), "github.com/docker/compose/v5/cmd", "docker-compose", "", true); err != nil {
		return p, err
	}
	if p.jaegerVersion, err = moduleVersion(ctx, filepath.Join(pinned, "jaeger"), "github.com/jaegertracing/jaeger", true); err != nil {
		return p, err
	}
	if p.jaeger, err = buildProgram(ctx, o.cache, filepath.Join(pinned, "jaeger"), "github.com/jaegertracing/jaeger/cmd/jaeger", "jaeger", p.jaegerVersion, true); err != nil {
		return p, err
	}
	// nats-server at the version the project pins as a library (pkg/go.mod), which the
	// compose file's image must match (deploy/check holds the image to it). It is built in
	// the workspace, where another module could select a later version: the version
	// selected is part of the binary's name in the cache.
	pkgDir := filepath.Join(o.root, "pkg")
	if p.natsVersion, err = moduleVersion(ctx, pkgDir, "github.com/nats-io/nats-server/v2", false); err != nil {
		return p, err
	}
	if p.nats, err = buildProgram(ctx, o.cache, pkgDir, "github.com/nats-io/nats-server/v2", "nats-server", p.natsVersion, false); err != nil {
		return p, err
	}
	return p, nil
}

// buildProgram builds pkg (of version, when known) in the module at dir, static, into the
// cache, unless it is there.
func buildProgram(ctx context.Context, cache, dir, pkg, name, version string, ownModule bool) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), pkg, version)
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	out := filepath.Join(cache, "bin", name+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	env := append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly -buildvcs=false")
	if ownModule {
		env = append(env, "GOWORK=off")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return "", err
	}
	// Built under a name of its own and renamed: a run beside this one never sees half a file.
	tmp, err := os.CreateTemp(filepath.Dir(out), name+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	if _, err := output(ctx, env, dir, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp.Name(), pkg); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return out, os.Rename(tmp.Name(), out)
}

// moduleVersion is the version of module mod that the module at dir requires.
func moduleVersion(ctx context.Context, dir, mod string, ownModule bool) (string, error) {
	env := os.Environ()
	if ownModule {
		env = append(env, "GOWORK=off")
	}
	v, err := output(ctx, env, dir, "go", "list", "-m", "-f", "{{.Version}}", mod)
	return strings.TrimSpace(v), err
}

// checkVersions holds the compose file's default images to the releases this run builds in
// their place, so that the version a laptop pulls is the version tested: nats-server at the
// version of the module, Jaeger v2 at the release paired with the pinned Jaeger module
// (Jaeger tags v1.N and v2.(N-63) from one commit: v1.74.0 / v2.11.0 in its CHANGELOG).
func checkVersions(root, composeFile string, p programs) error {
	b, err := os.ReadFile(composeFile)
	if err != nil {
		return err
	}
	var problems []string
	want := func(re, what, version string) {
		m := regexp.MustCompile(re).FindSubmatch(b)
		switch {
		case m == nil:
			problems = append(problems, fmt.Sprintf("no image ${%s:-…} in %s", what, composeFile))
		case string(m[1]) != version:
			problems = append(problems, fmt.Sprintf("%s defaults to %s, but the run builds %s in its place", what, m[1], version))
		}
	}
	want(`\$\{NATS_IMAGE:-nats:([0-9.]+)-alpine\}`, "NATS_IMAGE", strings.TrimPrefix(p.natsVersion, "v"))
	var major, minor, patch int
	if _, err := fmt.Sscanf(p.jaegerVersion, "v%d.%d.%d", &major, &minor, &patch); err != nil || major != 1 || minor < 63 {
		return fmt.Errorf("the pinned Jaeger module is %s: want v1.N.P with N ≥ 63, which pairs with v2.(N-63).P", p.jaegerVersion)
	}
	want(`\$\{JAEGER_IMAGE:-jaegertracing/jaeger:([0-9.]+)\}`, "JAEGER_IMAGE", "2."+strconv.Itoa(minor-63)+"."+strconv.Itoa(patch))
	// The builder made here is this machine's Go: the Dockerfile's default builder must be
	// the same release (a patch apart is the same language and library), or the images
	// tested are built by another compiler than shipped.
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return err
	}
	if m := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(dockerfile); m == nil {
		problems = append(problems, "the Dockerfile has no ARG GO_VERSION=")
	} else if goVersion := strings.TrimPrefix(runtime.Version(), "go"); release(string(m[1])) != release(goVersion) {
		problems = append(problems, fmt.Sprintf("the Dockerfile builds with Go %s, but this run's builder is Go %s", m[1], goVersion))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// release is a Go version's major.minor: 1.26.8 → 1.26.
func release(v string) string {
	if i := strings.LastIndexByte(v, '.'); strings.Count(v, ".") == 2 {
		return v[:i]
	}
	return v
}
