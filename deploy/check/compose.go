package check

import (
	"github.com/demobank/yacredits/pkg/bus"

	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads a compose file as docker compose does (schema validation,
// interpolation, merge keys, paths resolved against its directory), with env as the only
// environment for ${VARIABLES}: nil leaves every default in the file in force. No .env
// file is read, so the result does not depend on the machine. content, when not nil,
// stands in for the file's text (a test's broken copy, with the real paths around it).
func LoadCompose(ctx context.Context, path string, content []byte, env map[string]string) (*types.Project, error) {
	if content == nil {
		var err error
		if content, err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	// A copy: the loader writes into the map it is given (COMPOSE_PROJECT_NAME), and
	// callers share theirs between parallel loads.
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	return loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: content}},
		Environment: env,
	})
}

// Names of the infrastructure services in docker-compose.yml.
const (
	ComposeNATS   = "nats"
	ComposeJaeger = "jaeger"
)

// CheckCompose checks a loaded compose project against the services and the repository at
// root. It returns every problem found.
func CheckCompose(p *types.Project, root string) []error {
	var errs []error
	fail := func(service, format string, args ...any) {
		errs = append(errs, fmt.Errorf("compose service %s: %s", service, fmt.Sprintf(format, args...)))
	}
	for _, name := range []string{ComposeNATS, ComposeJaeger} {
		if _, ok := p.Services[name]; !ok {
			fail(name, "missing")
		}
	}
	natsServers := 0
	if _, ok := p.Services[ComposeNATS]; ok {
		natsServers = 1
	}

	// Every service: pinned images, a working health check.
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		if s.Build == nil && !Pinned(s.Image) {
			fail(name, "image %q is not pinned to a tag", s.Image)
		}
		if hc := s.HealthCheck; hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] == "NONE" {
			fail(name, "has no health check")
		}
		for dep, d := range s.DependsOn {
			if _, ok := p.Services[dep]; !ok {
				fail(name, "depends on %s, which is not a service", dep)
			}
			if d.Condition == types.ServiceConditionHealthy && p.Services[dep].HealthCheck == nil {
				fail(name, "waits for %s to be healthy, which has no health check", dep)
			}
		}
	}

	// Our services: built from their Dockerfile, given only what they read, and the
	// settings load.
	var gatewaySettings *Settings
	plans := map[string]Settings{}
	for _, svc := range Services {
		s, ok := p.Services[svc.Name]
		if !ok {
			fail(svc.Name, "missing")
			continue
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			} else {
				env[k] = ""
			}
		}
		if unread := svc.UnreadVars(env); len(unread) > 0 {
			fail(svc.Name, "is given variables it does not read: %s", strings.Join(unread, ", "))
		}
		st, err := svc.LoadEnv(env)
		if err != nil {
			fail(svc.Name, "%v", err)
			continue
		}
		if svc.Name == "gateway" {
			gatewaySettings = &st
		}
		plans[svc.Name] = st
		if st.NATSReplicas > natsServers {
			fail(svc.Name, "NATS_REPLICAS=%d, but compose runs %d NATS server(s)", st.NATSReplicas, natsServers)
		}
		for _, v := range []string{"NATS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
			if err := pointsAtService(p, env[v]); err != nil {
				fail(svc.Name, "%s: %v", v, err)
			}
		}
		errs = append(errs, checkComposeBuild(p, root, svc.Name, s, st)...)
		if dep, ok := s.DependsOn[ComposeNATS]; !ok || dep.Condition != types.ServiceConditionHealthy {
			fail(svc.Name, "does not wait for nats to be healthy (depends_on condition: service_healthy)")
		}
		if st.HealthAddr == "" {
			fail(svc.Name, "HEALTH_ADDR is not set: nothing serves /readyz")
		} else if hc := s.HealthCheck; hc != nil && !slices.ContainsFunc(hc.Test, func(arg string) bool {
			return strings.Contains(arg, ":"+port(st.HealthAddr)+"/")
		}) {
			fail(svc.Name, "health check %q does not probe HEALTH_ADDR's port %s", hc.Test, port(st.HealthAddr))
		}
	}

	// The settings of the provisioning plan: each service's as the provisioner's.
	if prov, ok := plans["provision"]; ok {
		for _, name := range slices.Sorted(maps.Keys(plans)) {
			for _, d := range PlanDisagreements(prov.Plan, name, plans[name].Plan) {
				fail(name, "%s", d)
			}
		}
	}

	// Graceful stop: longer than the longest in-flight work.
	if gatewaySettings != nil {
		for _, svc := range Services {
			s, ok := p.Services[svc.Name]
			if !ok {
				continue
			}
			need := gatewaySettings.Deadline // a search's whole life
			switch svc.Name {
			case "gateway":
				need = gatewaySettings.ShutdownTimeout
			case "provision":
				// One call of a pass; a pass stopped midway is finished by the next.
				need = bus.DeclareTimeout
			}
			grace := 10 * time.Second // docker's default
			if s.StopGracePeriod != nil {
				grace = time.Duration(*s.StopGracePeriod)
			}
			if grace <= need {
				fail(svc.Name, "stop_grace_period %s is not longer than the work it must let finish (%s)", grace, need)
			}
		}
		// The API published on loopback only.
		gw := p.Services["gateway"]
		apiPort := port(gatewaySettings.HTTPAddr)
		if !slices.ContainsFunc(gw.Ports, func(pc types.ServicePortConfig) bool {
			return fmt.Sprint(pc.Target) == apiPort && pc.Published == apiPort && pc.HostIP == "127.0.0.1"
		}) {
			fail("gateway", "does not publish HTTP_ADDR's port %s on 127.0.0.1:%s", apiPort, apiPort)
		}
	}
	for _, svc := range []string{"scoring", "offers"} {
		if len(p.Services[svc].Ports) > 0 {
			fail(svc, "publishes ports; only the gateway takes outside traffic")
		}
	}
	errs = append(errs, checkComposeNATS(p)...)
	return errs
}

// checkComposeBuild checks that a service is built from its Dockerfile and that the image
// has the health check's command.
func checkComposeBuild(p *types.Project, root, name string, s types.ServiceConfig, st Settings) []error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("compose service %s: %s", name, fmt.Sprintf(format, args...))
	}
	if s.Build == nil {
		return []error{fail("is not built (build: context, dockerfile)")}
	}
	if fi, err := os.Stat(s.Build.Context); err != nil || !fi.IsDir() {
		return []error{fail("build context %s does not exist", s.Build.Context)}
	}
	dockerfile := s.Build.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(s.Build.Context, dockerfile)
	}
	want := filepath.Join(root, "Dockerfile")
	if filepath.Clean(dockerfile) != want {
		return []error{fail("is built from %s, want %s", dockerfile, want)}
	}
	args := map[string]string{}
	for k, v := range s.Build.Args {
		if v != nil {
			args[k] = *v
		}
	}
	if args["SERVICE"] != name {
		return []error{fail("is built with SERVICE=%q, want %q (build: args)", args["SERVICE"], name)}
	}
	d, err := ParseDockerfile(dockerfile, args)
	if err != nil {
		return []error{fail("%v", err)}
	}
	var ports []string
	for _, addr := range []string{st.HTTPAddr, st.HealthAddr} {
		if addr != "" {
			ports = append(ports, port(addr))
		}
	}
	bc, err := NewBuildContext(s.Build.Context)
	if err != nil {
		return []error{fail("%v", err)}
	}
	errs := CheckDockerfile(bc, name, d, ports)
	if hc := s.HealthCheck; hc != nil && len(hc.Test) > 1 && hc.Test[0] == "CMD" && !d.Final().Installs(hc.Test[1]) {
		errs = append(errs, fail("health check runs %s, which %s does not install (the image has no shell)", hc.Test[1], dockerfile))
	}
	return errs
}

// checkComposeNATS checks the NATS server: version, health check, configuration, and that
// its store is on a named volume.
func checkComposeNATS(p *types.Project) []error {
	s, ok := p.Services[ComposeNATS]
	if !ok {
		return nil
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("compose service nats: %s", fmt.Sprintf(format, args...)))
	}
	if err := CheckNATSImage(s.Image); err != nil {
		fail("%v", err)
	}
	cmd := []string(s.Command)
	i := slices.Index(cmd, "--config")
	if i < 0 || i+1 >= len(cmd) {
		fail("is not started with --config")
		return errs
	}
	var confFile string
	var volumes = map[string]string{} // target → named volume
	binds := map[string]string{}      // target → file in the repository
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			binds[v.Target] = v.Source
		}
		switch {
		case v.Type == types.VolumeTypeBind && v.Target == cmd[i+1]:
			confFile = v.Source
		case v.Type == types.VolumeTypeVolume:
			if _, ok := p.Volumes[v.Source]; ok {
				volumes[v.Target] = v.Source
			}
		}
	}
	if confFile == "" {
		fail("its configuration %s is not mounted from the repository", cmd[i+1])
		return errs
	}
	text, err := os.ReadFile(confFile)
	if err != nil {
		fail("%v", err)
		return errs
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	opts, err := NATSConfig(string(text), env, func(name string) (string, bool) {
		src, ok := binds[path.Join(path.Dir(cmd[i+1]), name)]
		if !ok {
			return "", false
		}
		data, err := os.ReadFile(src)
		return string(data), err == nil
	}, nil)
	if err != nil {
		fail("%s: %v", confFile, err)
		return errs
	}
	if !opts.JetStream || !opts.SyncAlways {
		fail("%s: want JetStream with sync_interval: always", confFile)
	}
	if _, ok := volumes[opts.StoreDir]; !ok {
		fail("the JetStream store %s is not on a named volume", opts.StoreDir)
	}
	if err := CheckNATSMemory(opts); err != nil {
		fail("%s: %v", confFile, err)
	}
	if prov, ok := p.Services["provision"]; ok {
		env := map[string]string{}
		for k, v := range prov.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		svc, _ := ServiceByName("provision")
		if st, err := svc.LoadEnv(env); err == nil { // CheckCompose says why when it does not load
			if err := CheckNATSFileStore(opts, st.Plan, 0); err != nil {
				fail("%s: %v", confFile, err)
			}
		}
	}
	errs = append(errs, checkNATSUsers(opts)...)
	for _, svc := range Services {
		if s, ok := p.Services[svc.Name]; ok {
			if u := s.Environment["NATS_USER"]; u == nil || *u != svc.Name {
				fail("%s does not connect as its own NATS user %q", svc.Name, svc.Name)
			}
		}
	}
	if opts.HTTPPort == 0 {
		fail("%s: no http_port, so no /healthz for the health check", confFile)
	}
	return errs
}

// pointsAtService checks that a URL's host is a compose service.
func pointsAtService(p *types.Project, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if _, ok := p.Services[u.Hostname()]; !ok {
		return fmt.Errorf("%s is not a compose service", u.Hostname())
	}
	return nil
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
