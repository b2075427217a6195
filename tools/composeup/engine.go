//go:build linux

package main

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// engine is the Docker engine the run uses: the one the docker CLI reaches (DOCKER_HOST, or
// its context) when it answers, or a private dockerd this run started, and stops.
type engine struct {
	host   string        // DOCKER_HOST for every docker command; "" leaves the CLI's own choice
	build  []string      // the command that builds with BuildKit: docker buildx build --load, or a CLI with BuildKit built in
	daemon *exec.Cmd     // the private daemon, nil when the engine is somebody else's
	exited chan struct{} // closed when the private daemon has exited
	dir    string        // the private daemon's sockets and log
	lock   *os.File      // held while the private daemon runs on its data directory
	kept   bool
}

// env is the environment of a docker or compose command: only what they need to find the
// engine and their own configuration, so that nothing exported in the caller's shell (an
// AUTH_DISABLED, a key, an image or a URL the compose file reads) changes what is tested;
// compose reads everything else from the run's env file.
func (e *engine) env(extra ...string) []string {
	var env []string
	keys := []string{"PATH", "HOME", "TMPDIR", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"}
	if e.dir != "" {
		// The private engine: its socket is all the CLI needs. The caller's TLS settings and
		// context are for another engine, and the caller's docker configuration (proxies
		// that compose would copy into the containers) is not this run's: an empty one.
		keys = keys[:3]
		env = append(env, "DOCKER_CONFIG="+filepath.Join(e.dir, "config"))
	}
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if e.host != "" {
		env = append(env, "DOCKER_HOST="+e.host)
	}
	return append(env, extra...)
}

// docker runs a docker command on the engine and returns its standard output.
func (e *engine) docker(ctx context.Context, args ...string) (string, error) {
	return output(ctx, e.env(), "", "docker", args...)
}

// answers tells whether the engine answers docker info within ten seconds.
func (e *engine) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := e.docker(ctx, "info", "--format", "{{.ServerVersion}}")
	return err == nil
}

// startEngine finds an engine that answers or starts one. A private daemon keeps its images
// and build cache under cache, so that a second run rebuilds nothing that has not changed.
func startEngine(ctx context.Context, cache string, keep bool) (*engine, error) {
	if _, err := exec.LookPath("docker"); err == nil {
		if e := (&engine{host: os.Getenv("DOCKER_HOST")}); e.answers(ctx) {
			return e, e.findBuilder(ctx)
		}
	}
	// A private engine an earlier run left up (-keep) is used as it is, and left up.
	if host, err := os.ReadFile(filepath.Join(cache, "kept-engine")); err == nil {
		if e := (&engine{host: strings.TrimSpace(string(host))}); e.answers(ctx) {
			return e, e.findBuilder(ctx)
		}
		os.Remove(filepath.Join(cache, "kept-engine"))
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("no Docker engine answers (docker info), and starting one needs root: start one, or set DOCKER_HOST")
	}
	if err := installPackages(ctx); err != nil {
		return nil, err
	}
	lock, err := lockEngine(ctx, filepath.Join(cache, "engine.lock"))
	if err != nil {
		return nil, err
	}
	e, err := startDaemon(ctx, cache, keep, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	// From here on the daemon runs: every failure stops it (and releases the lock).
	if err := e.wait(ctx); err != nil {
		e.stop() //nolint:errcheck // the wait's failure is the error
		return nil, err
	}
	if err := e.sweep(ctx); err != nil {
		e.stop() //nolint:errcheck // the sweep's failure is the error
		return nil, err
	}
	if err := e.findBuilder(ctx); err != nil {
		e.stop() //nolint:errcheck // the missing builder is the error
		return nil, err
	}
	return e, nil
}

// lockEngine takes the lock of the private engine's data directory: one daemon on it at a
// time, so a second run waits for the first (and gives up with ctx).
func lockEngine(ctx context.Context, path string) (*os.File, error) {
	lock, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return lock, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			lock.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			lock.Close()
			return nil, fmt.Errorf("waiting for another run's engine (%s): %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// startDaemon starts dockerd on the cache's data directory.
func startDaemon(ctx context.Context, cache string, keep bool, lock *os.File) (*engine, error) {
	// The sockets' paths must stay short (108 bytes for a unix socket): a directory of
	// their own under /tmp, not the cache.
	dir, err := os.MkdirTemp("", "composeup-engine-")
	if err != nil {
		return nil, err
	}
	e := &engine{host: "unix://" + filepath.Join(dir, "docker.sock"), dir: dir, lock: lock}
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer log.Close()
	// An empty configuration file: the machine's /etc/docker/daemon.json, made for its own
	// engine, must not change this one.
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "config"), 0o700); err != nil { // the CLI's (env)
		os.RemoveAll(dir)
		return nil, err
	}
	// No iptables: this machine's kernel may not offer it, and nothing here needs NAT. The
	// containers reach each other over compose's bridge, and the published ports on loopback
	// are served by docker-proxy.
	e.daemon = exec.Command("dockerd",
		"--config-file", conf,
		"--host", e.host,
		"--data-root", filepath.Join(cache, "docker"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--iptables=false", "--ip-forward=false",
		"--storage-driver=overlay2")
	e.daemon.Stdout, e.daemon.Stderr = log, log
	// A process group of its own, so that a Ctrl-C in the terminal reaches this process
	// alone, which then takes the stack down before it stops the engine. The engine dies
	// with this process if it is killed, unless it is to be kept.
	e.daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !keep {
		e.daemon.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
	if err := e.daemon.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dockerd: %w", err)
	}
	e.exited = make(chan struct{})
	go func() { e.daemon.Wait(); close(e.exited) }() //nolint:errcheck // its log says why
	return e, nil
}

// wait waits until the private daemon answers, for 90 seconds at most.
func (e *engine) wait(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(90 * time.Second)
	for !e.answers(ctx) {
		select {
		case <-e.exited:
			return fmt.Errorf("dockerd exited: %s", tail(filepath.Join(e.dir, "dockerd.log")))
		case <-deadline:
			return fmt.Errorf("dockerd did not answer within 90s: %s", tail(filepath.Join(e.dir, "dockerd.log")))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// keep leaves a private daemon running when the run ends (-keep), for the next run to use.
func (e *engine) keep(cache string) {
	e.kept = true
	if e.daemon != nil {
		os.WriteFile(filepath.Join(cache, "kept-engine"), []byte(e.host), 0o600) //nolint:errcheck // only a convenience
		fmt.Printf("composeup: the engine is left running: DOCKER_HOST=%s (pid %d; stop it with kill)\n", e.host, e.daemon.Process.Pid)
	}
}

// stop stops a private daemon (and with it its containerd); an engine that was not ours is
// left alone.
func (e *engine) stop() error {
	if e.daemon == nil || e.kept {
		return nil
	}
	defer e.lock.Close()                     // and with it the lock
	e.daemon.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already
	select {
	case <-e.exited:
	case <-time.After(60 * time.Second):
		e.daemon.Process.Kill() //nolint:errcheck // it did not stop in time
		<-e.exited
		os.RemoveAll(e.dir)
		return errors.New("dockerd did not stop within 60s of SIGTERM: killed")
	}
	return os.RemoveAll(e.dir)
}

// findBuilder picks the command that builds with BuildKit, as the Dockerfile needs (cache
// mounts): the buildx plugin when the docker CLI has it; otherwise a docker CLI older than
// 23, whose BuildKit is built in (Debian's docker.io installs one at /usr/bin/docker). A CLI
// from 23 on without buildx would build with the legacy builder, which cannot.
func (e *engine) findBuilder(ctx context.Context) error {
	if _, err := e.docker(ctx, "buildx", "version"); err == nil {
		e.build = []string{"docker", "buildx", "build", "--load"}
		return nil
	}
	for _, cli := range []string{"docker", "/usr/bin/docker"} {
		v, err := output(ctx, e.env(), "", cli, "version", "--format", "{{.Client.Version}}")
		if err != nil {
			continue
		}
		var major int
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d.", &major); err == nil && major < 23 {
			e.build = []string{"env", "DOCKER_BUILDKIT=1", cli, "build"}
			return nil
		}
	}
	return errors.New("no docker CLI builds with BuildKit: install the buildx plugin, or Debian's docker.io (its CLI has BuildKit built in)")
}

// installPackages installs, from Debian's packages, the engine when it is missing and a
// static busybox (the stand-in images' shell and wget) when /bin/busybox is not one.
func installPackages(ctx context.Context) error {
	var pkgs []string
	if _, err := exec.LookPath("dockerd"); err != nil {
		pkgs = append(pkgs, "docker.io")
	}
	if !staticBinary("/bin/busybox") {
		pkgs = append(pkgs, "busybox-static")
	}
	if len(pkgs) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%s missing, and no apt-get to install them with", strings.Join(pkgs, ", "))
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if _, err := output(ctx, env, "", "apt-get", append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)...); err != nil {
		// The package lists may be missing on a fresh machine: read them, then try once more.
		if _, uerr := output(ctx, env, "", "apt-get", "update", "-q"); uerr != nil {
			return fmt.Errorf("apt-get install %s: %w; apt-get update: %w", strings.Join(pkgs, " "), err, uerr)
		}
		if _, err := output(ctx, env, "", "apt-get", append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)...); err != nil {
			return err
		}
	}
	return nil
}

// staticBinary tells whether path is an ELF executable without an interpreter: it runs in an
// image that has no libc.
func staticBinary(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// output runs a command and returns its standard output; its error carries the end of its
// standard error. env nil is this process's environment.
func output(ctx context.Context, env []string, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// lastLines is the end of s, n lines at most.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tail is the end of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), 20)
}

// projectPrefix starts the name of every project a run brings up.
const projectPrefix = "yacredits-composeup-"

// sweep removes what earlier runs left on the private engine's data (a run killed before
// its down): their containers would start again with the engine (restart: unless-stopped).
// The engine is this run's alone (the lock), so nothing of a run in progress is removed.
func (e *engine) sweep(ctx context.Context) error {
	const label = "com.docker.compose.project"
	projects := map[string]bool{}
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "--format", `{{.Label "` + label + `"}}`}
		if kind == "container" {
			args = []string{"container", "ls", "--all", "--format", `{{.Label "` + label + `"}}`}
		}
		out, err := e.docker(ctx, args...)
		if err != nil {
			return err
		}
		for _, p := range strings.Fields(out) {
			if strings.HasPrefix(p, projectPrefix) {
				projects[p] = true
			}
		}
	}
	for p := range projects {
		filter := "label=" + label + "=" + p
		for _, kind := range []string{"container", "network", "volume"} {
			ls := []string{kind, "ls", "--quiet", "--filter", filter}
			rm := []string{kind, "rm"}
			if kind == "container" {
				ls = []string{"container", "ls", "--all", "--quiet", "--filter", filter}
				rm = []string{"container", "rm", "--force", "--volumes"}
			}
			out, err := e.docker(ctx, ls...)
			if err != nil {
				return err
			}
			if ids := strings.Fields(out); len(ids) > 0 {
				if _, err := e.docker(ctx, append(rm, ids...)...); err != nil {
					return fmt.Errorf("removing what run %s left: %w", p, err)
				}
			}
		}
		fmt.Printf("composeup: removed what an earlier run left: project %s\n", p)
	}
	return nil
}
