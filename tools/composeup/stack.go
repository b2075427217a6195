//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stack is one run of the compose file: its project, the environment it is run with, and
// the published ports.
type stack struct {
	eng     *engine
	o       options
	compose string
	project string // unique per run: its containers, network and volume are named by it
	envFile string // the secrets (deploy/compose/secrets.sh) and what this run sets
	token   string // the API's bearer token
	ports   struct{ gateway, conversions, jaeger int }
}

// newStack writes the run's environment: fresh secrets as a user makes them, a bearer token
// (the API is checked with authentication on), the images made here, and free ports.
func newStack(ctx context.Context, eng *engine, o options, p programs, b baseImages) (*stack, error) {
	s := &stack{eng: eng, o: o, compose: p.compose, project: projectPrefix + randomHex(4), token: randomHex(32)}
	for _, port := range []*int{&s.ports.gateway, &s.ports.conversions, &s.ports.jaeger} {
		var err error
		if *port, err = freePort(); err != nil {
			return nil, err
		}
	}
	secrets, err := output(ctx, nil, o.root, "sh", "deploy/compose/secrets.sh", "-")
	if err != nil {
		return nil, err
	}
	vars := fmt.Sprintf(`AUTH_TOKENS=%s
AUTH_DISABLED=false
BUILDER_IMAGE=%s
RUNTIME_IMAGE=%s
NATS_IMAGE=%s
JAEGER_IMAGE=%s
GATEWAY_PORT=%d
CONVERSIONS_PORT=%d
JAEGER_UI_PORT=%d
LOG_FORMAT=json
`, s.token, b.builder, b.runtime, b.nats, b.jaeger, s.ports.gateway, s.ports.conversions, s.ports.jaeger)
	f, err := os.CreateTemp("", "composeup-*.env")
	if err != nil {
		return nil, err
	}
	s.envFile = f.Name()
	_, err = f.WriteString(secrets + vars)
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(s.envFile) // half the secrets are still secrets
		return nil, err
	}
	return s, nil
}

// run runs a compose command on the stack's project.
func (s *stack) run(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"--project-name", s.project, "--file", s.o.file, "--project-directory", s.o.root, "--env-file", s.envFile}, args...)
	return output(ctx, s.eng.env(), s.o.root, s.compose, all...)
}

// composeConfig is what build reads of `docker compose config`.
type composeConfig struct {
	Services map[string]struct {
		Image string          `json:"image"`
		Build json.RawMessage `json:"build"`
	} `json:"services"`
}

// buildSection is a service's build: what build does with it, and nothing else. A setting it
// would not apply (a target, secrets, more contexts) is refused rather than ignored.
type buildSection struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile"`
	Args       map[string]string `json:"args"`
}

// build builds every image the compose file builds, as its build sections say (context,
// Dockerfile, arguments, tag), with BuildKit. Compose itself would hand the build to the
// buildx plugin, which is not installed here (docs/testing.md).
func (s *stack) build(ctx context.Context) error {
	out, err := s.run(ctx, "config", "--format", "json")
	if err != nil {
		return err
	}
	var c composeConfig
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		return fmt.Errorf("compose config: %w", err)
	}
	builds := map[string]buildSection{}
	names := make([]string, 0, len(c.Services))
	for name, svc := range c.Services {
		if len(svc.Build) == 0 {
			continue
		}
		var b buildSection
		dec := json.NewDecoder(bytes.NewReader(svc.Build))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			return fmt.Errorf("%s: a build setting this run does not apply: %w", name, err)
		}
		builds[name] = b
		names = append(names, name)
	}
	if len(names) == 0 {
		return errors.New("the compose file builds no image")
	}
	sort.Strings(names)
	for _, name := range names {
		image, b := c.Services[name].Image, builds[name]
		if image == "" {
			return fmt.Errorf("%s: builds an image without naming it", name)
		}
		args := slices.Clone(s.eng.build[1:])
		dockerfile := b.Dockerfile
		if !filepath.IsAbs(dockerfile) {
			dockerfile = filepath.Join(b.Context, dockerfile)
		}
		args = append(args, "--file", dockerfile, "--tag", image)
		keys := make([]string, 0, len(b.Args))
		for k := range b.Args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			args = append(args, "--build-arg", k+"="+b.Args[k])
		}
		args = append(args, b.Context)
		if _, err := output(ctx, s.eng.env(), s.o.root, s.eng.build[0], args...); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// up starts the stack and waits until every service is healthy (or has started, for the
// services without a health check): --wait fails when one exits or turns unhealthy.
func (s *stack) up(ctx context.Context) error {
	_, err := s.run(ctx, "up", "--detach", "--no-build", "--pull", "never", "--wait", "--wait-timeout", "300")
	return err
}

// dumpLogs prints the end of every service's log, for a failure's reader: within a minute,
// even when the run's own time is up or the engine is stuck.
func (s *stack) dumpLogs(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	ps, _ := s.run(ctx, "ps", "--all")
	fmt.Fprintln(os.Stderr, "composeup: docker compose ps:\n"+ps)
	logs, _ := s.run(ctx, "logs", "--no-color", "--tail", "40")
	fmt.Fprintln(os.Stderr, "composeup: docker compose logs (the last 40 lines of each):\n"+logs)
}

// down takes the stack down with its volume, then checks that the engine holds nothing
// of the project: no container, network or volume.
func (s *stack) down(ctx context.Context) error {
	if _, err := s.run(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "40"); err != nil {
		return err
	}
	label := "label=com.docker.compose.project=" + s.project
	var left []string
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "--quiet", "--filter", label}
		if kind == "container" {
			args = []string{"container", "ls", "--all", "--quiet", "--filter", label}
		}
		out, err := s.eng.docker(ctx, args...)
		if err != nil {
			return err
		}
		if ids := strings.Fields(out); len(ids) > 0 {
			left = append(left, fmt.Sprintf("%d %s(s)", len(ids), kind))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("down left %s of project %s", strings.Join(left, ", "), s.project)
	}
	return nil
}

// yacheck runs the integration checker against the published API with the token, and
// wants every check passed: none failed and none skipped.
func (s *stack) yacheck(ctx context.Context) error {
	dir, err := os.MkdirTemp("", s.project+"-yacheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Built, then run itself (not through go run), so that a cancelled run stops it.
	bin, report := filepath.Join(dir, "yacheck"), filepath.Join(dir, "report.json")
	if _, err := output(ctx, nil, s.o.root, "go", "build", "-o", bin, "./cmd/yacheck"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-url", "http://127.0.0.1:"+strconv.Itoa(s.ports.gateway), "-json", report)
	// The token in the environment, not on a command line that ps shows to everyone; and
	// no other YACHECK_ setting of the caller's (other credentials) changes what is checked.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "YACHECK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "YACHECK_TOKEN="+s.token)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	runErr := cmd.Run()
	b, err := os.ReadFile(report)
	if err != nil {
		return fmt.Errorf("yacheck wrote no report (%v): %w", runErr, err)
	}
	var r struct {
		Results []struct {
			ID      string `json:"id"`
			Outcome string `json:"outcome"`
			Detail  string `json:"detail"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("yacheck's report: %w", err)
	}
	var bad []string
	for _, c := range r.Results {
		if c.Outcome != "passed" {
			bad = append(bad, fmt.Sprintf("%s %s: %s", c.ID, c.Outcome, c.Detail))
		}
	}
	switch {
	case len(r.Results) == 0:
		return errors.New("yacheck ran no check")
	case len(bad) > 0:
		return fmt.Errorf("%d of %d checks not passed:\n%s", len(bad), len(r.Results), strings.Join(bad, "\n"))
	case runErr != nil:
		return fmt.Errorf("yacheck: %w", runErr)
	}
	fmt.Printf("composeup: yacheck: %d checks passed\n", len(r.Results))
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// freePort is a port free on loopback now; the engine binds it a moment later.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
