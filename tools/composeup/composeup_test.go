//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// traces.json is Jaeger's /api/traces answer for the gateway, trimmed to the fields read:
// the trace of one search from a real run of this command (sent with the caller's trace
// 0d40f479…, which the gateway links to and does not continue) and an unrelated trace.
func loadTraces(t *testing.T) jaegerTraces {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "traces.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tr jaegerTraces
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestLinkedTrace(t *testing.T) {
	const caller = "0d40f479ccb8c7eff5ee3f087a97007e"
	tests := []struct {
		name         string
		caller       string
		drop         string // a service whose spans are removed first
		wantID       string
		wantServices []string
		wantMissing  []string
	}{
		{"the search's trace, found by its link", caller, "", "0c59025517678cc79015ff4142260ab5", []string{"gateway", "offers", "scoring"}, nil},
		{"a trace that never reached offers", caller, "offers", "0c59025517678cc79015ff4142260ab5", []string{"gateway", "scoring"}, []string{"offers"}},
		{"another caller's trace is not ours", "ffffffffffffffffffffffffffffffff", "", "", nil, []string{"gateway", "scoring", "offers"}},
		// The trace's own id is not a link to it: the gateway started its own trace.
		{"the gateway's own trace id is not the caller's", "0c59025517678cc79015ff4142260ab5", "", "", nil, []string{"gateway", "scoring", "offers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := loadTraces(t)
			if tt.drop != "" {
				for i := range tr.Data {
					tr.Data[i].Spans = slices.DeleteFunc(tr.Data[i].Spans, func(s jaegerSpan) bool {
						return tr.Data[i].Processes[s.ProcessID].ServiceName == tt.drop
					})
				}
			}
			id, services := linkedTrace(tr, tt.caller)
			if id != tt.wantID || !slices.Equal(services, tt.wantServices) {
				t.Errorf("linkedTrace = %q %v, want %q %v", id, services, tt.wantID, tt.wantServices)
			}
			if got := missingOf([]string{"gateway", "scoring", "offers"}, services); !slices.Equal(got, tt.wantMissing) {
				t.Errorf("missing %v, want %v", got, tt.wantMissing)
			}
		})
	}
}

// An image's file system: every parent directory before its files, links kept, and the hash
// of a first pass (the label that decides whether the image is made again) changes with
// any file's content.
func TestTarball(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "src", "bin"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "src", "bin", "go"), []byte("toolchain"), 0o755))
	must(os.Symlink("bin/go", filepath.Join(dir, "src", "go")))
	must(os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("certificates"), 0o644))
	fill := func(tb *tarball) error {
		tb.passwd("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n")
		tb.dir("tmp", 0o1777)
		if err := tb.file("etc/ssl/certs/ca-certificates.crt", 0o644, filepath.Join(dir, "ca.crt")); err != nil {
			return err
		}
		return tb.tree(filepath.Join(dir, "src"), "usr/local/go")
	}

	var buf bytes.Buffer
	tb := &tarball{tw: tar.NewWriter(&buf)}
	must(fill(tb))
	must(tb.tw.Close())
	seen := map[string]bool{}
	got := map[string]string{}
	r := tar.NewReader(&buf)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(err)
		name := strings.TrimSuffix(h.Name, "/")
		if parent := filepath.Dir(name); parent != "." && !seen[parent] {
			t.Errorf("%s comes before its directory %s", name, parent)
		}
		seen[name] = true
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(r)
			got[name] = string(b)
		case tar.TypeSymlink:
			got[name] = "-> " + h.Linkname
		case tar.TypeDir:
			if name == "tmp" && h.Mode != 0o1777 {
				t.Errorf("tmp has mode %o, want 1777", h.Mode)
			}
		}
	}
	want := map[string]string{
		"etc/passwd":                        "root:x:0:0::/root:/bin/sh\n",
		"etc/group":                         "root:x:0:\n",
		"etc/ssl/certs/ca-certificates.crt": "certificates",
		"usr/local/go/bin/go":               "toolchain",
		"usr/local/go/go":                   "-> bin/go",
	}
	for name, content := range want {
		if got[name] != content {
			t.Errorf("%s = %q, want %q", name, got[name], content)
		}
	}

	hash := func() string {
		h := sha256.New()
		must(fill(&tarball{hash: h}))
		return string(h.Sum(nil))
	}
	before := hash()
	if hash() != before {
		t.Fatal("the same files hash differently")
	}
	must(os.WriteFile(filepath.Join(dir, "src", "bin", "go"), []byte("toolchain, updated"), 0o755))
	if hash() == before {
		t.Error("a changed file leaves the hash as it was: the image would not be made again")
	}
}

func TestCheckVersions(t *testing.T) {
	compose := `services:
  nats:
    image: ${NATS_IMAGE:-nats:2.15.2-alpine}
  jaeger:
    image: ${JAEGER_IMAGE:-jaegertracing/jaeger:2.12.0}
`
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	dockerfile := "ARG GO_VERSION=" + goVersion + "\nARG BUILDER_IMAGE=golang:${GO_VERSION}\n"
	tests := []struct {
		name        string
		nats, jaeg  string
		compose     string
		dockerfile  string
		wantProblem string
	}{
		{"the releases built", "v2.15.2", "v1.75.0", compose, dockerfile, ""},
		{"a Go a patch apart", "v2.15.2", "v1.75.0", compose, strings.Replace(dockerfile, goVersion, release(goVersion)+".99", 1), ""},
		{"another Go in the Dockerfile", "v2.15.2", "v1.75.0", compose, strings.Replace(dockerfile, goVersion, "1.25.0", 1), "the Dockerfile builds with Go 1.25.0, but this run's builder is Go " + goVersion},
		{"another nats-server", "v2.15.3", "v1.75.0", compose, dockerfile, "NATS_IMAGE defaults to 2.15.2, but the run builds 2.15.3"},
		{"another Jaeger", "v2.15.2", "v1.76.0", compose, dockerfile, "JAEGER_IMAGE defaults to 2.12.0, but the run builds 2.13.0"},
		{"an image not overridable", "v2.15.2", "v1.75.0", strings.Replace(compose, "${NATS_IMAGE:-nats:2.15.2-alpine}", "nats:2.15.2-alpine", 1), dockerfile, "no image ${NATS_IMAGE"},
		{"a Jaeger module of v1 before v2", "v2.15.2", "v1.41.0", compose, dockerfile, "want v1.N.P with N ≥ 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "docker-compose.yml")
			if err := os.WriteFile(path, []byte(tt.compose), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "Dockerfile"), []byte(tt.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			err := checkVersions(root, path, programs{natsVersion: tt.nats, jaegerVersion: tt.jaeg})
			switch {
			case tt.wantProblem == "" && err != nil:
				t.Errorf("unexpected: %v", err)
			case tt.wantProblem != "" && (err == nil || !strings.Contains(err.Error(), tt.wantProblem)):
				t.Errorf("got %v, want a problem with %q", err, tt.wantProblem)
			}
		})
	}
}
