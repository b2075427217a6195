// Command standalone runs the whole system in one process: an embedded NATS JetStream
// server storing under DATA_DIR, and the gateway, scoring, offers and conversions services
// talking to it exactly as they do when deployed apart. No Docker, no external NATS.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/embednats"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/telemetry"
	"github.com/demobank/yacredits/pkg/testphones"
	"github.com/demobank/yacredits/services/conversions"
	"github.com/demobank/yacredits/services/gateway"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/scoring"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "standalone:", err)
		os.Exit(1)
	}
}

// devPhoneHashKey is used when PHONE_HASH_KEY is unset, so that the demo runs with no
// setup. It is public, so hashes made with it protect nothing: say so loudly.
const devPhoneHashKey = "standalone-demo-key-not-a-secret-0123456789"

// devAuditKey is the audit trail's pseudonym key when AUDIT_PSEUDONYM_KEY is unset: public
// too, and refused beyond loopback like the phone-hash demo key.
const devAuditKey = "standalone-demo-audit-key-not-a-secret-0123456789"

// settings are the standalone binary's own variables; each service reads its own too.
type settings struct {
	DataDir    string // DATA_DIR: JetStream's files
	NATSListen string // NATS_LISTEN: a client port for tools (nats CLI); empty: in-process only
	NATSNoSync bool   // NATS_NO_SYNC: skip the per-write fsync (benchmarks only)
	PprofAddr  string // PPROF_ADDR: Go's profiles of the whole process, on loopback
	Plan       provision.Settings
}

// readiness collects scoring's and offers' readiness checks for the gateway's /readyz;
// until a service has given its checks, one check says it has not started.
type readiness struct {
	mu     sync.Mutex
	checks map[string][]health.Check
}

func (r *readiness) add(service string) func([]health.Check) {
	return func(cs []health.Check) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.checks == nil {
			r.checks = map[string][]health.Check{}
		}
		r.checks[service] = health.Named(service+": ", cs)
	}
}

func (r *readiness) list() []health.Check {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []health.Check
	for _, service := range []string{"scoring", "offers", "conversions"} {
		cs, ok := r.checks[service]
		if !ok {
			out = append(out, health.Func(service, func() error { return errors.New("not started yet") }))
			continue
		}
		out = append(out, cs...)
	}
	return out
}

// linkKeysFile returns DATA_DIR's link key set, made on the first start: links sealed by
// one run of the binary still open after a restart. A set kept from before sealed references
// (Ed25519 keys alone) gets a sealing key, its old keys retired, as an operator rotates.
// Real keys come from a Secret.
func linkKeysFile(dir string) (path string, made bool, err error) {
	path = filepath.Join(dir, "link-keys.json")
	set := offerlink.NewKeySet()
	if data, err := os.ReadFile(path); err == nil {
		if set, err = offerlink.ParseKeySet(data); err != nil {
			return "", false, fmt.Errorf("%s: %w", path, err)
		}
		if len(set.Sealing()) > 0 {
			return path, false, nil
		}
		for _, kid := range set.IDs() {
			if set.RetiredAt(kid).IsZero() {
				if set, err = set.Retire(kid, time.Now()); err != nil {
					return "", false, err
				}
			}
		}
	}
	k, err := offerlink.GenerateKey("sa-" + time.Now().UTC().Format("20060102"))
	if err != nil {
		return "", false, err
	}
	data, err := set.With(k).Marshal()
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", false, fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", false, fmt.Errorf("link keys: %w", err)
	}
	return path, true, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// writeDemoTestPhones writes the demo test phones file into dir and returns its path.
func writeDemoTestPhones(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, "test-phones.json")
	if err := os.WriteFile(path, testphones.Demo(), 0o640); err != nil {
		return "", fmt.Errorf("demo test phones: %w", err)
	}
	return path, nil
}

func loadSettings(getenv config.Getenv) (settings, error) {
	r := config.NewReader(getenv)
	s := settings{
		DataDir:    r.String("DATA_DIR", "./data"),
		NATSListen: r.Addr("NATS_LISTEN", ""),
		NATSNoSync: r.Bool("NATS_NO_SYNC", false),
		PprofAddr:  telemetry.ReadProfileAddr(r),
		// The plan's settings, as `yactl provision` reads them (its replicas are the
		// services' NATS_REPLICAS).
		Plan: provision.ReadSettings(r, 0),
	}
	// The embedded server has no users: whoever reaches its port may read every record and
	// rewrite the catalog. It is the laptop's tools' door, so it stays on the laptop.
	if s.NATSListen != "" && !config.Loopback(s.NATSListen) {
		r.Fail("NATS_LISTEN", "%s is beyond loopback, and the embedded JetStream has no credentials: listen on 127.0.0.1, or deploy (deploy/README.md)", s.NATSListen)
	}
	return s, r.Err()
}

func run(ctx context.Context, getenv config.Getenv, stdout io.Writer) error {
	return runSystem(ctx, getenv, stdout, func(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
		return telemetry.NewTracerProvider(ctx, getenv, service)
	})
}

// tracing makes the tracer provider of one service; tests pass one that records spans.
type tracing func(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error)

func runSystem(ctx context.Context, getenv config.Getenv, stdout io.Writer, newTracer tracing) (err error) {
	defaultKey := getenv("PHONE_HASH_KEY") == ""
	defaultAuditKey := getenv("AUDIT_PSEUDONYM_KEY") == ""
	var demoTestPhones, dataLinkKeys string
	env := func(k string) string {
		switch {
		case k == "PHONE_HASH_KEY" && defaultKey:
			return devPhoneHashKey
		case k == "AUDIT_PSEUDONYM_KEY" && defaultAuditKey:
			return devAuditKey
		case k == "TEST_PHONES" && demoTestPhones != "":
			return demoTestPhones
		case k == "LINK_KEYS_FILE" && dataLinkKeys != "":
			return dataLinkKeys
		}
		return getenv(k)
	}
	set, setErr := loadSettings(env)
	if defaultAuditKey && setErr == nil && !config.AllLoopback(or(getenv("HTTP_ADDR"), "127.0.0.1:8080"), getenv("HEALTH_ADDR")) {
		// The audit trail's demo key is public: on a laptop only, as the phone-hash one.
		setErr = errors.New("AUDIT_PSEUDONYM_KEY: required with an API beyond loopback (openssl rand -hex 32); the demo key is public")
	}
	// The demo's test phones answer fixed outcomes to anybody who knows them: on a laptop
	// only, unless TEST_PHONES names a file.
	if setErr == nil && getenv("TEST_PHONES") == "" && config.Loopback(or(getenv("HTTP_ADDR"), "127.0.0.1:8080")) {
		// The demo's test phones (docs/integration-check.md), written where people
		// can read them: a deployed gateway has none unless TEST_PHONES names a file.
		if demoTestPhones, setErr = writeDemoTestPhones(set.DataDir); setErr != nil {
			return setErr
		}
	}
	madeLinkKeys := false
	if setErr == nil && getenv("LINK_KEYS_FILE") == "" {
		if dataLinkKeys, madeLinkKeys, setErr = linkKeysFile(set.DataDir); setErr != nil {
			return setErr
		}
	}
	gwCfg, gwErr := gateway.LoadConfig(env)
	// One process, one health endpoint: the gateway's. HEALTH_ADDR is the gateway's alone.
	workerEnv := func(k string) string {
		if k == "HEALTH_ADDR" {
			return ""
		}
		return env(k)
	}
	scCfg, scErr := scoring.LoadConfig(workerEnv)
	ofCfg, ofErr := offers.LoadConfig(workerEnv)
	cvCfg, cvErr := conversions.LoadConfig(workerEnv)
	if err := errors.Join(setErr, gwErr, scErr, ofErr, cvErr); err != nil {
		return err
	}
	log := telemetry.NewLogger(stdout, gwCfg.Log)
	if defaultKey {
		log.Warn().Msg("PHONE_HASH_KEY is not set: using the public demo key; set a secret one for real data")
	}
	if defaultAuditKey {
		log.Warn().Msg("AUDIT_PSEUDONYM_KEY is not set: the audit trail's pseudonyms use the public demo key; set a secret one for real data")
	}
	if dataLinkKeys != "" {
		log.Warn().Str("file", dataLinkKeys).Bool("made_now", madeLinkKeys).
			Msg("LINK_KEYS_FILE is not set: proposal links are sealed with this data directory's own key")
	}

	// Each service reports its own service.name, as when deployed apart; the process has
	// one meter provider and one /metrics, served by the gateway.
	tracers := map[string]trace.TracerProvider{}
	for _, name := range []string{"gateway", "scoring", "offers", "conversions"} {
		tp, shutdown, err := newTracer(ctx, name)
		if err != nil {
			return err
		}
		tracers[name] = tp
		defer func() {
			flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			err = errors.Join(err, shutdown(flush))
		}()
	}
	meter, metrics, err := telemetry.NewMeterProvider("standalone")
	if err != nil {
		return err
	}

	profiles, err := telemetry.ServeProfiles(set.PprofAddr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, profiles.Close()) }()
	if profiles != nil {
		log.Info().Str("pprof", profiles.Addr()).Msg("serving Go's profiles on loopback")
	}

	srv, err := embednats.Start(embednats.Options{
		Name: "standalone", StoreDir: filepath.Join(set.DataDir, "jetstream"),
		Listen: set.NATSListen, NoSync: set.NATSNoSync,
	})
	if err != nil {
		return err
	}
	defer embednats.Stop(srv)
	log.Info().Str("data_dir", set.DataDir).Str("nats_listen", set.NATSListen).
		Bool("sync_always", !set.NATSNoSync).Msg("embedded JetStream started")

	// The standalone is its own administrator: it provisions what the services only check
	// and bind to, from the same plan and settings as `yactl provision`.
	plan := set.Plan
	plan.Replicas = gwCfg.NATS.Replicas
	if err := provisionAll(ctx, srv, gwCfg.NATS, plan, log); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	grp, gctx := errgroup.WithContext(ctx)
	start := func(name string, runService func(context.Context, jetstream.JetStream) error) error {
		nc, err := bus.Connect(ctx, gwCfg.NATS, name, nats.InProcessServer(srv))
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return err
		}
		grp.Go(func() error {
			// Close only after the service returns: its consumers drain over this connection.
			defer nc.Close()
			err := runService(gctx, js)
			if errors.Is(err, context.Canceled) && gctx.Err() != nil {
				return nil // stopped while still starting: a shutdown, not a failure
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
		return nil
	}
	// One /readyz for the process: the gateway's, with scoring's and offers' checks added as
	// each service makes them (a service not started yet is not ready).
	var others readiness
	errs := []error{
		start("gateway", func(ctx context.Context, js jetstream.JetStream) error {
			return gateway.Run(ctx, gwCfg, gateway.Deps{JS: js, Log: log,
				Tracer: tracers["gateway"], Meter: meter, Metrics: metrics, Checks: others.list})
		}),
		start("scoring", func(ctx context.Context, js jetstream.JetStream) error {
			return scoring.Run(ctx, scCfg, scoring.Deps{JS: js, Log: log, Tracer: tracers["scoring"], Meter: meter,
				Checks: others.add("scoring")})
		}),
		start("offers", func(ctx context.Context, js jetstream.JetStream) error {
			return offers.Run(ctx, ofCfg, offers.Deps{JS: js, Log: log, Tracer: tracers["offers"], Meter: meter,
				Checks: others.add("offers")})
		}),
		start("conversions", func(ctx context.Context, js jetstream.JetStream) error {
			return conversions.Run(ctx, cvCfg, conversions.Deps{JS: js, Log: log, Meter: meter,
				Checks: others.add("conversions")})
		}),
	}
	if err := errors.Join(errs...); err != nil {
		cancel() // stop whatever did start
		return errors.Join(err, grp.Wait())
	}
	go func() {
		<-gctx.Done()
		log.Info().Msg("shutting down: finishing in-flight requests and messages")
	}()
	if err := grp.Wait(); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// provisionAll applies the whole plan on the embedded server.
func provisionAll(ctx context.Context, srv *server.Server, cfg config.NATS, s provision.Settings, log zerolog.Logger) error {
	nc, err := bus.Connect(ctx, cfg, "provision", nats.InProcessServer(srv))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	done, err := provision.Apply(ctx, js, provision.Plan(s))
	if len(done) > 0 {
		log.Info().Strs("changes", done).Msg("streams, buckets and consumers provisioned")
	}
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}
