package check

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var (
	k8sDir   = filepath.Join(root, "deploy", "k8s")
	overlays = []string{"dev", "prod"}
)

// buildOverlay builds an overlay from fs with the Secrets its templates promise.
func buildOverlay(t *testing.T, fs filesys.FileSystem, dir string) *Cluster {
	t.Helper()
	objs, err := Build(fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	external, err := ExternalSecrets(fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(objs, external)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOverlaysMeetPolicies(t *testing.T) {
	for _, o := range overlays {
		c := buildOverlay(t, filesys.MakeFsOnDisk(), filepath.Join(k8sDir, "overlays", o))
		for _, r := range Rules {
			t.Run(o+"/"+r.Name, func(t *testing.T) {
				for _, err := range r.Check(c) {
					t.Error(err)
				}
			})
		}
	}
}

// What differs between the overlays, and must.
func TestOverlaySizes(t *testing.T) {
	tests := []struct {
		overlay, namespace   string
		natsReplicas         int // NATS_REPLICAS every service is given
		minGateway, minOther int32
	}{
		{"dev", "yacredits-dev", 1, 1, 1},
		{"prod", "yacredits", 3, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.overlay, func(t *testing.T) {
			c := buildOverlay(t, filesys.MakeFsOnDisk(), filepath.Join(k8sDir, "overlays", tt.overlay))
			if c.Namespace != tt.namespace {
				t.Errorf("namespace %q, want %q", c.Namespace, tt.namespace)
			}
			if !slices.ContainsFunc(c.Namespaces, func(ns *corev1.Namespace) bool { return ns.Name == tt.namespace }) {
				t.Errorf("the overlay does not create namespace %s", tt.namespace)
			}
			if n := c.Workload("StatefulSet", NATSName); n == nil || n.Replicas != NATSServers {
				t.Errorf("NATS is not %d servers", NATSServers)
			}
			for _, sc := range c.ServiceContainers() {
				env, err := c.ServiceEnv(sc)
				if err != nil {
					t.Fatal(err)
				}
				st, err := sc.Service.LoadEnv(env)
				if err != nil {
					t.Fatal(err)
				}
				if st.NATSReplicas != tt.natsReplicas {
					t.Errorf("%s: NATS_REPLICAS=%d, want %d", sc.Service.Name, st.NATSReplicas, tt.natsReplicas)
				}
				want := tt.minOther
				switch sc.Service.Name {
				case "gateway":
					want = tt.minGateway
				case "provision":
					want = 1 // one on purpose: passes must not race (base/provision/deployment.yaml)
				}
				if sc.Workload.Replicas < want {
					t.Errorf("%s: %d replicas, want at least %d", sc.Service.Name, sc.Workload.Replicas, want)
				}
			}
		})
	}
}

// dev generates its Secrets with fake values; prod expects them created from templates.
// Both must be the same Secrets with the same keys, or one of them is out of date.
func TestDevSecretsMatchProdTemplates(t *testing.T) {
	fs := filesys.MakeFsOnDisk()
	dev := buildOverlay(t, fs, filepath.Join(k8sDir, "overlays", "dev"))
	prod, err := ExternalSecrets(fs, filepath.Join(k8sDir, "overlays", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	if len(prod) == 0 {
		t.Fatal("prod has no secret templates")
	}
	generated := map[string][]string{}
	for name, data := range dev.Secrets {
		base := name[:strings.LastIndex(name, "-")] // without the content hash
		generated[base] = slices.Sorted(maps.Keys(data))
	}
	// dev, too, expects some created beforehand (the phone-hash key: never committed).
	devExternal, err := ExternalSecrets(fs, filepath.Join(k8sDir, "overlays", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range devExternal {
		generated[name] = keys
	}
	for name, keys := range prod {
		if !slices.Equal(generated[name], keys) {
			t.Errorf("Secret %s: dev has keys %v, the prod template %v", name, generated[name], keys)
		}
	}
	if len(generated) != len(prod) {
		t.Errorf("dev generates Secrets %v, prod has templates for %v", slices.Sorted(maps.Keys(generated)), slices.Sorted(maps.Keys(prod)))
	}
}

// brokenFS is deploy/k8s in memory with an overlay "broken" on top of dev, made of the
// given patches (a strategic merge or JSON 6902 patch per entry, kustomize syntax).
func brokenFS(t *testing.T, kustomization string, edit func(fs filesys.FileSystem)) filesys.FileSystem {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	disk := filesys.MakeFsOnDisk()
	err := disk.Walk(k8sDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := disk.ReadFile(path)
		if err != nil {
			return err
		}
		return fs.WriteFile(path, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(fs)
	}
	// dev's Secrets created beforehand are the broken overlay's too.
	templates, _ := filepath.Glob(filepath.Join(k8sDir, "overlays", "dev", "secrets", "*.env.example"))
	for _, src := range templates {
		data, err := disk.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.WriteFile(filepath.Join(k8sDir, "overlays", "broken", "secrets", filepath.Base(src)), data); err != nil {
			t.Fatal(err)
		}
	}
	head := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../dev\n"
	if err := fs.WriteFile(filepath.Join(k8sDir, "overlays", "broken", "kustomization.yaml"), []byte(head+kustomization)); err != nil {
		t.Fatal(err)
	}
	return fs
}

// Each broken overlay must be caught by the rule meant to catch it, with a complaint
// naming what is wrong: the checks can fail.
func TestPoliciesCatchBreakage(t *testing.T) {
	jsonPatch := func(kind, name, ops string) string {
		return "patches:\n  - target:\n      kind: " + kind + "\n      name: " + name + "\n    patch: |-\n" + indent(ops, 6)
	}
	tests := []struct {
		name, kustomization string
		edit                func(filesys.FileSystem)
		rule, want          string
	}{
		{name: "probe removed", rule: "probes", want: "container gateway: no readinessProbe",
			kustomization: jsonPatch("Deployment", "gateway", "- op: remove\n  path: /spec/template/spec/containers/0/readinessProbe")},
		{name: "probe on an undeclared port", rule: "probes", want: "port 9999",
			kustomization: jsonPatch("Deployment", "offers", "- op: replace\n  path: /spec/template/spec/containers/0/livenessProbe/httpGet/port\n  value: 9999")},
		{name: "no memory limit", rule: "resources", want: "memory needs a request and a limit",
			kustomization: jsonPatch("Deployment", "scoring", "- op: remove\n  path: /spec/template/spec/containers/0/resources/limits/memory")},
		{name: "writable root filesystem", rule: "security context", want: "readOnlyRootFilesystem",
			kustomization: jsonPatch("Deployment", "offers", "- op: replace\n  path: /spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem\n  value: false")},
		{name: "capability added", rule: "security context", want: "capabilities",
			kustomization: jsonPatch("StatefulSet", "nats", "- op: add\n  path: /spec/template/spec/containers/0/securityContext/capabilities/add\n  value: [NET_ADMIN]")},
		{name: "no seccomp profile", rule: "security context", want: "seccompProfile",
			kustomization: jsonPatch("Deployment", "jaeger", "- op: remove\n  path: /spec/template/spec/securityContext/seccompProfile")},
		{name: "service selects nothing", rule: "selectors", want: "Service gateway: selects no pods",
			kustomization: jsonPatch("Service", "gateway", "- op: replace\n  path: /spec/selector\n  value: {app.kubernetes.io/name: gatewy}")},
		{name: "HPA on a missing Deployment", rule: "selectors", want: "HorizontalPodAutoscaler gateway: targets Deployment api",
			kustomization: jsonPatch("HorizontalPodAutoscaler", "gateway", "- op: replace\n  path: /spec/scaleTargetRef/name\n  value: api")},
		{name: "network policy for absent pods", rule: "selectors", want: "NetworkPolicy nats: selects no pods",
			kustomization: jsonPatch("NetworkPolicy", "nats", "- op: replace\n  path: /spec/podSelector/matchLabels\n  value: {app.kubernetes.io/name: nats-server}")},
		{name: "missing secret key", rule: "config references", want: "Secret phone-hash",
			kustomization: jsonPatch("Deployment", "scoring", "- op: replace\n  path: /spec/template/spec/containers/0/env/0/valueFrom/secretKeyRef/key\n  value: PHONE_HASH")},
		{name: "missing ConfigMap", rule: "config references", want: "ConfigMap offers-settings",
			kustomization: jsonPatch("Deployment", "offers", "- op: replace\n  path: /spec/template/spec/containers/0/envFrom/1/configMapRef/name\n  value: offers-settings")},
		{name: "variable nobody reads", rule: "service variables", want: "GATEWAY_PORT",
			kustomization: jsonPatch("Deployment", "gateway", "- op: add\n  path: /spec/template/spec/containers/0/env/-\n  value: {name: GATEWAY_PORT, value: \"8080\"}")},
		{name: "setting that does not load", rule: "service variables", want: "SHUTDOWN_TIMEOUT",
			kustomization: "configMapGenerator:\n  - name: gateway-config\n    behavior: merge\n    literals: [SHUTDOWN_TIMEOUT=15]\n"},
		{name: "PDB blocking every eviction", rule: "disruption budgets", want: "blocks every eviction",
			kustomization: jsonPatch("PodDisruptionBudget", "scoring", "- op: remove\n  path: /spec/maxUnavailable\n- op: add\n  path: /spec/minAvailable\n  value: 1")},
		{name: "PDB breaking the NATS quorum", rule: "disruption budgets", want: "quorum",
			kustomization: jsonPatch("PodDisruptionBudget", "nats", "- op: replace\n  path: /spec/maxUnavailable\n  value: 2")},
		{name: "shutdown longer than the grace period", rule: "graceful termination", want: "Deployment gateway: terminationGracePeriodSeconds",
			kustomization: "configMapGenerator:\n  - name: gateway-config\n    behavior: merge\n    literals: [SHUTDOWN_TIMEOUT=40s]\n"},
		{name: "consumer killed mid-work", rule: "graceful termination", want: "Deployment offers: terminationGracePeriodSeconds 5s",
			kustomization: jsonPatch("Deployment", "offers", "- op: replace\n  path: /spec/template/spec/terminationGracePeriodSeconds\n  value: 5")},
		{name: "old NATS", rule: "nats cluster", want: "older than v2.12.6",
			kustomization: "images:\n  - name: nats\n    newTag: 2.12.5-alpine\n"},
		{name: "two NATS servers", rule: "nats cluster", want: "2 replicas, want 3",
			kustomization: jsonPatch("StatefulSet", "nats", "- op: replace\n  path: /spec/replicas\n  value: 2")},
		{name: "writes not synced", rule: "nats cluster", want: "sync_interval: always",
			edit: replaceIn(filepath.Join(k8sDir, "base", "nats", "nats.conf"), "sync_interval: always", "sync_interval: \"2m\"")},
		{name: "the provisioner set apart from the gateway", rule: "plan settings", want: "gateway reads SEARCH_RETENTION=24h0m0s, the provisioner 48h0m0s",
			edit: replaceIn(filepath.Join(k8sDir, "base", "provision", "deployment.yaml"), "            - name: NATS_USER\n              value: provision",
				"            - name: SEARCH_RETENTION\n              value: 48h\n            - name: NATS_USER\n              value: provision")},
		{name: "an import with a Secret that does not exist", rule: "config references", want: "CronJob preapprovals-import container import: refers to",
			edit: replaceIn(filepath.Join(k8sDir, "base", "import", "cronjob.yaml"), "name: nats-importer", "name: nats-import")},
		{name: "an import run that may overlap the next", rule: "jobs", want: "runs may overlap",
			edit: replaceIn(filepath.Join(k8sDir, "base", "import", "cronjob.yaml"), "concurrencyPolicy: Forbid", "concurrencyPolicy: Allow")},
		{name: "an import as root", rule: "security context", want: "CronJob preapprovals-import container import: runs as user 0",
			edit: replaceIn(filepath.Join(k8sDir, "base", "import", "cronjob.yaml"), "            runAsNonRoot: true\n            runAsUser: 65532", "            runAsUser: 0")},
		{name: "route to a server that does not exist", rule: "nats cluster", want: "cluster routes",
			kustomization: jsonPatch("StatefulSet", "nats", "- op: replace\n  path: /spec/template/spec/containers/0/env/11/value\n  value: \"nats://route:$(NATS_ROUTE_PASSWORD)@nats-3.nats-headless:6222\"")},
		{name: "routes without credentials", rule: "nats cluster", want: "cluster routes need no credentials",
			edit: replaceIn(filepath.Join(k8sDir, "base", "nats", "nats.conf"), "user: route\n    password: $NATS_ROUTE_PASSWORD", "")},
		{name: "a user allowed everything", rule: "nats cluster", want: `user "scoring" may publish or subscribe to everything`,
			edit: replaceIn(filepath.Join(k8sDir, "base", "nats", "users.conf"), `subscribe: { allow: ["_INBOX_scoring.>"] }`, `subscribe: { allow: [">"] }`)},
		{name: "two users in one account", rule: "nats cluster", want: "share the account SCORING",
			edit: replaceIn(filepath.Join(k8sDir, "base", "nats", "users.conf"), "  SCORING: {\n    users: [\n",
				"  SCORING: {\n    users: [\n      {user: extra, password: $NATS_SCORING_PASSWORD, permissions: {publish: {allow: [\"x\"]}, subscribe: {allow: [\"_INBOX_extra.>\"]}}}\n")},
		{name: "the import job let out to the internet", rule: "network policies", want: "job preapprovals-import can reach",
			kustomization: jsonPatch("NetworkPolicy", "provision-egress", "- op: add\n  path: /spec/egress/-\n  value: {}")},
		{name: "the audit trail's key given to the gateway", rule: "service variables", want: "AUDIT_PSEUDONYM_KEY",
			kustomization: jsonPatch("Deployment", "gateway", "- op: add\n  path: /spec/template/spec/containers/0/env/-\n  value: {name: AUDIT_PSEUDONYM_KEY, valueFrom: {secretKeyRef: {name: audit-pseudonym, key: AUDIT_PSEUDONYM_KEY}}}")},
		{name: "a service on another's NATS user", rule: "nats cluster", want: `offers: NATS_USER "gateway"`,
			kustomization: jsonPatch("Deployment", "offers", "- op: replace\n  path: /spec/template/spec/containers/0/env/0/value\n  value: gateway")},
		{name: "memory store too small for the work stream", rule: "nats cluster", want: "less than the 512 MiB",
			edit: replaceIn(filepath.Join(k8sDir, "base", "nats", "nats.conf"), "max_memory_store: 640MB", "max_memory_store: 256MB")},
		{name: "memory limit below the memory store", rule: "nats cluster", want: "leaves less than 256 MiB",
			kustomization: jsonPatch("StatefulSet", "nats", "- op: replace\n  path: /spec/template/spec/containers/0/resources/limits/memory\n  value: 768Mi")},
		{name: "no lame-duck mode", rule: "nats cluster", want: "lame-duck",
			kustomization: jsonPatch("StatefulSet", "nats", "- op: remove\n  path: /spec/template/spec/containers/0/lifecycle")},
		{name: "more stream copies than servers", rule: "nats cluster", want: "NATS_REPLICAS=5",
			kustomization: "configMapGenerator:\n  - name: yacredits-common\n    behavior: merge\n    literals: [NATS_REPLICAS=5]\n"},
		{name: "NATS on a load balancer", rule: "exposure", want: "Service nats: type LoadBalancer",
			kustomization: jsonPatch("Service", "nats", "- op: add\n  path: /spec/type\n  value: LoadBalancer")},
		{name: "floating tag", rule: "pinned images", want: "yacredits/offers:latest",
			kustomization: "images:\n  - name: yacredits/offers\n    newTag: latest\n"},
		{name: "services may reach anything", rule: "network policies", want: "the services may reach only NATS",
			kustomization: jsonPatch("NetworkPolicy", "services-egress", "- op: add\n  path: /spec/egress/-\n  value: {}")},
		{name: "NATS open to every namespace", rule: "network policies", want: "from outside the namespace",
			kustomization: jsonPatch("NetworkPolicy", "nats", "- op: add\n  path: /spec/ingress/-\n  value: {from: [{namespaceSelector: {}}]}")},
		{name: "no default deny", rule: "network policies", want: "default-deny",
			kustomization: "patches:\n  - patch: |-\n      $patch: delete\n      apiVersion: networking.k8s.io/v1\n      kind: NetworkPolicy\n      metadata:\n        name: default-deny\n"},
		{name: "gateway cut off from NATS", rule: "network policies", want: "gateway → nats:4222 TCP: allowed=false",
			kustomization: jsonPatch("NetworkPolicy", "services-egress", "- op: replace\n  path: /spec/egress/0/ports/0/port\n  value: 4223")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := brokenFS(t, tt.kustomization, tt.edit)
			c := buildOverlay(t, fs, filepath.Join(k8sDir, "overlays", "broken"))
			rule, ok := RuleByName(tt.rule)
			if !ok {
				t.Fatalf("no rule %q", tt.rule)
			}
			errs := rule.Check(c)
			for _, err := range errs {
				if strings.Contains(err.Error(), tt.want) {
					return
				}
			}
			t.Errorf("rule %q: no complaint mentions %q; got %v", tt.rule, tt.want, errs)
		})
	}
}

// Fields the Kubernetes types do not have fail the build: a typo is not silently dropped.
func TestUnknownFieldsFail(t *testing.T) {
	tests := []struct{ name, kustomization, want string }{
		{"misspelt probe", "patches:\n  - target:\n      kind: Deployment\n      name: gateway\n    patch: |-\n      - op: add\n        path: /spec/template/spec/containers/0/readinesProbe\n        value: {periodSeconds: 5}\n", "readinesProbe"},
		{"kind nobody checks", "resources:\n  - extra.yaml\n", "no check knows this kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := brokenFS(t, tt.kustomization, func(fs filesys.FileSystem) {
				_ = fs.WriteFile(filepath.Join(k8sDir, "overlays", "broken", "extra.yaml"),
					[]byte("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: extra\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: []}}\n"))
			})
			_, err := Build(fs, filepath.Join(k8sDir, "overlays", "broken"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func replaceIn(path, old, new string) func(filesys.FileSystem) {
	return func(fs filesys.FileSystem) {
		data, err := fs.ReadFile(path)
		if err != nil || !strings.Contains(string(data), old) {
			panic("the test's edit no longer applies to " + path)
		}
		if err := fs.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1))); err != nil {
			panic(err)
		}
	}
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad) + "\n"
}
