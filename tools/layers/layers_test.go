package layers

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/demobank/yacredits/"

// business are the packages that decide and price: plain functions over values, tested with
// tables, that know nothing of the broker or of HTTP.
var business = []string{
	"services/scoring/policy", "services/scoring/preapproval",
	"services/offers/pricing", "services/offers/catalog", "services/offers/ceiling",
	"pkg/money", "pkg/phone", "pkg/contracts", "pkg/offerlink", "pkg/testphones",
}

// transport is what a business package must not reach, however indirectly.
var transport = []string{"github.com/nats-io/", "net/http", "github.com/go-chi/"}

// deps lists each package matched by patterns with every package it imports, directly or
// not (tests excluded: a test may start what it likes).
func deps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range patterns {
		cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, p)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		data, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", p, err, stderr.String())
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			out[f[0]] = f[1:]
		}
	}
	if len(out) == 0 {
		t.Fatalf("go list matched nothing for %v", patterns)
	}
	return out
}

// owner is the top of the tree a package of ours belongs to: "services/gateway", "pkg",
// "cmd", "tools"; "" for a package not of this module.
func owner(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module)
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	if parts[0] == "services" && len(parts) > 1 {
		return "services/" + parts[1]
	}
	return parts[0]
}

// violations lists every import of all (package → its dependencies) that breaks a rule.
func violations(all map[string][]string) []string {
	var out []string
	for pkg, ds := range all {
		from := owner(pkg)
		for _, d := range ds {
			to := owner(d)
			switch {
			case to == "":
			case from == "pkg" && to != "pkg":
				out = append(out, pkg+" imports "+d+": pkg knows nothing of services, commands or rigs")
			case strings.HasPrefix(from, "services/") && to != from && to != "pkg":
				out = append(out, pkg+" imports "+d+": a service imports pkg alone, never another service, a command or a rig")
			case from == "cmd" && to == "tools":
				out = append(out, pkg+" imports "+d+": what ships never includes the test rigs")
			}
		}
	}
	for _, b := range business {
		for _, d := range all[module+b] {
			for _, banned := range transport {
				if strings.HasPrefix(d, banned) {
					out = append(out, module+b+" imports "+d+": business logic knows neither the broker nor HTTP")
				}
			}
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	all := deps(t, module+"pkg/...", module+"services/...", module+"cmd/...")
	for _, b := range business {
		if _, ok := all[module+b]; !ok {
			t.Errorf("business package %s not found: update the list", b)
		}
	}
	for _, v := range violations(all) {
		t.Error(v)
	}
}

// Each rule names the import that breaks it.
func TestViolationsNameEachBrokenRule(t *testing.T) {
	tree := map[string][]string{
		module + "pkg/search":              {module + "pkg/contracts", module + "services/offers"},
		module + "services/gateway":        {module + "pkg/search", module + "services/scoring/policy"},
		module + "services/offers/pricing": {module + "services/offers/ceiling", "net/http"},
		module + "cmd/standalone":          {module + "services/gateway", module + "tools/topology"},
		module + "pkg/money":               {"math/big"},
	}
	got := strings.Join(violations(tree), "\n")
	for _, want := range []string{
		"pkg/search imports " + module + "services/offers",
		"services/gateway imports " + module + "services/scoring/policy",
		"services/offers/pricing imports net/http",
		"cmd/standalone imports " + module + "tools/topology",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no violation says %q; got:\n%s", want, got)
		}
	}
	if n := len(violations(tree)); n != 4 {
		t.Errorf("%d violations, want 4 (a service importing its own packages and pkg is fine):\n%s", n, got)
	}
}

func TestOwner(t *testing.T) {
	for pkg, want := range map[string]string{
		module + "services/gateway":           "services/gateway",
		module + "services/offers/pricing":    "services/offers",
		module + "pkg/search":                 "pkg",
		module + "cmd/yactl/internal/linkcmd": "cmd",
		module + "tools/topology":             "tools",
		"github.com/nats-io/nats.go":          "",
	} {
		if got := owner(pkg); got != want {
			t.Errorf("owner(%s) = %q, want %q", pkg, got, want)
		}
	}
}
