package check

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/demobank/yacredits/pkg/offerlink"
)

// root is the repository: the deploy module sits one level down.
var root = func() string {
	abs, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return abs
}()

var composePath = filepath.Join(root, "docker-compose.yml")

// composeEnv is what a developer must set: PHONE_HASH_KEY and LINK_KEYS have no default (a
// committed key would protect nothing).
var composeEnv = map[string]string{"PHONE_HASH_KEY": "4a1f0c8e2b7d9365af02c14e8b7d3f609ae5c21b47d8f0631c9e2a5b7d40f18e",
	"LINK_KEYS": func() string {
		k, err := offerlink.GenerateKey("compose-check")
		if err != nil {
			panic(err)
		}
		data, _ := offerlink.NewKeySet(k).Marshal()
		return string(data)
	}()}

// Without PHONE_HASH_KEY or LINK_KEYS compose refuses to start, naming it.
func TestComposeNeedsItsKeys(t *testing.T) {
	for _, missing := range []string{"PHONE_HASH_KEY", "LINK_KEYS"} {
		env := maps.Clone(composeEnv)
		delete(env, missing)
		if _, err := LoadCompose(context.Background(), composePath, nil, env); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("compose without %s: %v, want an error naming it", missing, err)
		}
	}
}

func TestComposeFile(t *testing.T) {
	p, err := LoadCompose(context.Background(), composePath, nil, composeEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range CheckCompose(p, root) {
		t.Error(err)
	}
}

// The defaults in the file are only defaults: what a developer sets in the shell reaches
// the services, and the result must still pass.
func TestComposeFileWithOverrides(t *testing.T) {
	env := map[string]string{
		"PHONE_HASH_KEY": "9b3e71c04fa28d56e1b07c93a4f25d8e60c1b79a3d42f58e07b6c91a2d3f4e5b", "NATS_GATEWAY_PASSWORD": "p0123456789abcdef",
		"AUTH_TOKENS": "a,b", "LOG_LEVEL": "debug", "LINK_KEYS": composeEnv["LINK_KEYS"],
		"YANDEX_CONVERSIONS_URL": "https://yandex.example/confirm", "YANDEX_TOKEN": "y", "YANDEX_PARTNER_ID": "4242",
	}
	p, err := LoadCompose(context.Background(), composePath, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := *p.Services["scoring"].Environment["PHONE_HASH_KEY"]; got != env["PHONE_HASH_KEY"] {
		t.Errorf("scoring PHONE_HASH_KEY = %q, want the shell's", got)
	}
	for _, err := range CheckCompose(p, root) {
		t.Error(err)
	}
}

// Each broken copy of docker-compose.yml must be caught, with the complaint naming what
// is wrong: the checks can fail.
func TestComposeChecksCatchBreakage(t *testing.T) {
	good, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new, want string
	}{
		// The NATS configuration is edited in a copy the broken compose file mounts.
		{"memory store too small for the work stream", "max_memory_store: 640MB", "max_memory_store: 256MB", "less than the 512 MiB"},
		{"writes not synced", "sync_interval: always", "sync_interval: \"1m\"", "sync_interval: always"},
		{"variable nobody reads", "      HTTP_ADDR: 0.0.0.0:8080\n",
			"      HTTP_ADDR: 0.0.0.0:8080\n      SHUTDOWN_TIMOUT: 15s\n", "SHUTDOWN_TIMOUT"},
		{"setting that does not load", "SEARCH_DEADLINE: 10s", "SEARCH_DEADLINE: 10", "SEARCH_DEADLINE"},
		{"API published on every interface", `"127.0.0.1:8080:8080"`, `"8080:8080"`, "127.0.0.1:8080"},
		{"old NATS", "image: nats:2.15.2-alpine", "image: nats:2.10.22-alpine", "older than"},
		{"floating NATS tag", "image: nats:2.15.2-alpine", "image: nats:latest", "not pinned"},
		{"missing Dockerfile", "dockerfile: Dockerfile\n      args:\n        SERVICE: offers", "dockerfile: Dockerfile.missing\n      args:\n        SERVICE: offers", "Dockerfile.missing"},
		{"the wrong service built", "SERVICE: offers", "SERVICE: scoring", "SERVICE=\"scoring\""},
		{"no health check", `"http://127.0.0.1:13133/status"]`, "\"http://127.0.0.1:13133/status\"]\n      disable: true", "jaeger: has no health check"},
		{"short stop grace", "stop_grace_period: 30s\n    depends_on:\n      nats:\n        condition: service_healthy\n      jaeger:",
			"stop_grace_period: 5s\n    depends_on:\n      nats:\n        condition: service_healthy\n      jaeger:", "stop_grace_period 5s"},
		{"more replicas than servers", `NATS_REPLICAS: "1"`, `NATS_REPLICAS: "3"`, "NATS_REPLICAS=3"},
		{"health check on the wrong port", "http://127.0.0.1:8081/readyz", "http://127.0.0.1:9999/readyz", "HEALTH_ADDR's port"},
		{"store not on a volume", "- nats-data:/data", "- nats-data:/elsewhere", "not on a named volume"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			broken := strings.Replace(string(good), tt.old, tt.new, 1)
			if broken == string(good) {
				conf, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "nats.conf"))
				if err != nil {
					t.Fatal(err)
				}
				brokenConf := strings.Replace(string(conf), tt.old, tt.new, 1)
				if brokenConf == string(conf) {
					t.Fatalf("the test's edit %q applies neither to docker-compose.yml nor to nats.conf", tt.old)
				}
				path := filepath.Join(t.TempDir(), "nats.conf")
				if err := os.WriteFile(path, []byte(brokenConf), 0o644); err != nil {
					t.Fatal(err)
				}
				broken = strings.Replace(string(good), "./deploy/compose/nats.conf:", path+":", 1)
			}
			p, err := LoadCompose(context.Background(), composePath, []byte(broken), composeEnv)
			if err != nil {
				t.Fatalf("the broken copy does not load: %v", err)
			}
			errs := CheckCompose(p, root)
			for _, err := range errs {
				if strings.Contains(err.Error(), tt.want) {
					return
				}
			}
			t.Errorf("no complaint mentions %q; got %v", tt.want, errs)
		})
	}
}
