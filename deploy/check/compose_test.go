package check

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"

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

// composeEnv is what deploy/compose/secrets.sh gives a developer: no secret has a default (a
// committed one would protect nothing, and the services refuse it beyond loopback).
var composeEnv = map[string]string{"PHONE_HASH_KEY": "c5b11e82ed8cd340b41b186c62e4917e03ceed0823e662c2c063a8a80776404a",
	"AUDIT_PSEUDONYM_KEY":       "1f7b3d9e5a2c8f0b4d6e1a3c5f7b9d2e4a6c8f0b1d3e5a7c9f2b4d6e8a0c1e3f",
	"NATS_GATEWAY_PASSWORD":     "pfd7bb04fc1ae7edf8ab7ff9614d274880c3e7de71f6cbec2b08a82a3918f1916",
	"NATS_SCORING_PASSWORD":     "pad5229fdcee49feac374431c01370ea7f6e1a19fb140fd5a2fa70c496965dabb",
	"NATS_OFFERS_PASSWORD":      "pec639f43ee21d6169efad1ec67fdd7148a2f3171afa02f38e8f23b5ccdab5282",
	"NATS_CONVERSIONS_PASSWORD": "p8e6bf7fd0ae19d08211e887ee99ecd9d74efa19e57fd9a1b14393b256f3d072f",
	"NATS_PROVISION_PASSWORD":   "p3f1e0c6a9b27d48e5f0a1c3b5d7e9f2a4c6e8b0d2f4a6c8e1b3d5f7a9c0e2b4d",
	"NATS_CATALOG_PASSWORD":     "p6a0d3e9c2b5f8a1d4e7c0b3f6a9d2e5c8b1f4a7d0e3c6b9f2a5d8e1c4b7f0a3d",
	"NATS_IMPORTER_PASSWORD":    "p9c2f5b8e1a4d7c0f3b6e9a2d5c8f1b4e7a0d3c6f9b2e5a8d1c4f7b0e3a6d9c2f",
	"NATS_AUDITOR_PASSWORD":     "pe4b7a0d3f6c9e2b5a8d1f4c7e0b3a6d9f2c5e8b1a4d7f0c3e6b9a2d5f8c1e4b7",
	"INTAKE_TOKENS":             "b2324286e1c37373f0c4a3048c1c708a9455a534fcc9bb323c0721853814bd52",
	"SITE_TOKENS":               "a840817d5bc1d15e828f00a7e43019748d9aa4561cbd9ac08ef98846cdb357e8",
	"OPS_TOKENS":                "d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2",
	"LINK_KEYS": func() string {
		k, err := offerlink.GenerateKey("compose-check")
		if err != nil {
			panic(err)
		}
		data, _ := offerlink.NewKeySet(k).Marshal()
		return string(data)
	}()}

// Without any of its secrets compose refuses to start, naming it and how to make them.
func TestComposeNeedsItsKeys(t *testing.T) {
	for missing := range composeEnv {
		env := maps.Clone(composeEnv)
		delete(env, missing)
		if _, err := LoadCompose(context.Background(), composePath, nil, env); err == nil || !strings.Contains(err.Error(), missing) ||
			!strings.Contains(err.Error(), "secrets.sh") {
			t.Errorf("compose without %s: %v, want an error naming it and deploy/compose/secrets.sh", missing, err)
		}
	}
}

// deploy/compose/secrets.sh writes an .env that compose reads as it is, and with which every
// service starts: what a developer runs before docker compose up.
func TestComposeSecretsScript(t *testing.T) {
	out, err := exec.Command("sh", filepath.Join(root, "deploy", "compose", "secrets.sh"), "-").Output()
	if err != nil {
		t.Fatalf("secrets.sh: %v", err)
	}
	env, err := dotenv.Parse(bytes.NewReader(out)) // as compose reads .env
	if err != nil {
		t.Fatal(err)
	}
	for name := range composeEnv {
		if env[name] == "" || env[name] == composeEnv[name] {
			t.Errorf("secrets.sh makes no fresh %s", name)
		}
	}
	p, err := LoadCompose(context.Background(), composePath, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range CheckCompose(p, root) {
		t.Error(err)
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
	env := maps.Clone(composeEnv)
	maps.Copy(env, map[string]string{
		"PHONE_HASH_KEY": "0adc1ecce113debf9fcf7d6b6d76c69201d6b42c9c0d25fab6b7166c190df969",
		"AUTH_TOKENS":    "5e48b27e5432e6998552cf3b5c7aa6160fee78e399e6a19f84df6745e2c755f4,bb20275da85d0d461bc114995f8a505d35750354986b25a4c3aac60ad665f6d5",
		"LOG_LEVEL":      "debug", "YANDEX_CONVERSIONS_URL": "https://yandex.example/confirm", "YANDEX_TOKEN": "y", "YANDEX_PARTNER_ID": "4242",
	})
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
		{"API published on every interface", `"127.0.0.1:${GATEWAY_PORT:-8080}:8080"`, `"${GATEWAY_PORT:-8080}:8080"`, "127.0.0.1:8080"},
		{"old NATS", "image: ${NATS_IMAGE:-nats:2.15.2-alpine}", "image: ${NATS_IMAGE:-nats:2.10.22-alpine}", "older than"},
		{"floating NATS tag", "image: ${NATS_IMAGE:-nats:2.15.2-alpine}", "image: ${NATS_IMAGE:-nats:latest}", "not pinned"},
		{"missing Dockerfile", "dockerfile: Dockerfile\n      args:\n        SERVICE: offers", "dockerfile: Dockerfile.missing\n      args:\n        SERVICE: offers", "Dockerfile.missing"},
		{"the wrong service built", "SERVICE: offers", "SERVICE: scoring", "SERVICE=\"scoring\""},
		{"no health check", `"http://127.0.0.1:13133/status"]`, "\"http://127.0.0.1:13133/status\"]\n      disable: true", "jaeger: has no health check"},
		{"short stop grace", "stop_grace_period: 30s\n    depends_on:\n      nats:\n        condition: service_healthy\n      provision:",
			"stop_grace_period: 5s\n    depends_on:\n      nats:\n        condition: service_healthy\n      provision:", "stop_grace_period 5s"},
		{"the provisioner set apart from offers", "      NATS_USER: provision\n", "      NATS_USER: provision\n      AUDIT_RETENTION: 17568h\n", "the provisioner 17568h0m0s"},
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

// Kubernetes runs the Jaeger release the compose file names, the one tools/composeup builds
// and checks traces in: one version, tested.
func TestJaegerOneVersion(t *testing.T) {
	re := regexp.MustCompile(`jaegertracing/jaeger:([0-9][0-9.]*)`)
	var tags []string
	for _, f := range []string{composePath, filepath.Join(root, "deploy", "k8s", "base", "jaeger", "deployment.yaml")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindAllSubmatch(b, -1)
		if len(m) != 1 {
			t.Fatalf("%s names Jaeger's image %d times, want once", f, len(m))
		}
		tags = append(tags, string(m[0][1]))
	}
	if tags[0] != tags[1] {
		t.Errorf("docker-compose.yml runs Jaeger %s, Kubernetes %s: want one version", tags[0], tags[1])
	}
}
