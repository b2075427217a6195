package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
)

// The ports each image serves: the API (the internal address, for conversions), and the
// health endpoints on HEALTH_ADDR.
var imagePorts = map[string][]string{"gateway": {"8080", "8081"}, "scoring": {"8081"}, "offers": {"8081"}, "conversions": {"8090", "8081"}}

func TestDockerfiles(t *testing.T) {
	bc, err := NewBuildContext(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range Services {
		t.Run(svc.Name, func(t *testing.T) {
			d, err := ParseDockerfile(filepath.Join(root, "services", svc.Name, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range CheckDockerfile(bc, svc.Name, d, imagePorts[svc.Name]) {
				t.Error(err)
			}
			if !d.Final().Installs("/healthcheck") {
				t.Error("the image has no /healthcheck for docker compose's health check")
			}
		})
	}
}

func TestDockerfileChecksCatchBreakage(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(root, "services", "gateway", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := NewBuildContext(root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
		ignore         []string // .dockerignore patterns instead of the real file
		want           string
	}{
		{name: "runtime with a shell", old: "FROM gcr.io/distroless/static-debian12:nonroot", new: "FROM alpine:3.22", want: "runtime image is alpine"},
		{name: "runs as root", old: "USER 65532:65532", new: "USER root", want: "non-root USER"},
		{name: "cgo", old: "CGO_ENABLED=0", new: "CGO_ENABLED=1", want: "CGO_ENABLED=0"},
		{name: "paths baked in", old: "go build -trimpath", new: "go build", want: "-trimpath"},
		{name: "a workspace module left out", old: "COPY cmd/ cmd/\n", new: "", want: "does not COPY cmd/go.mod"},
		{name: "port not exposed", old: "EXPOSE 8080 8081", new: "EXPOSE 8080", want: "does not EXPOSE 8081"},
		{name: "copies what is not there", old: "COPY pkg/ pkg/", new: "COPY pkg/ pkg/\nCOPY vendor/ vendor/", want: "COPY vendor/: not in the repository"},
		{name: "context without a module file", ignore: []string{"*", "!go.work", "!go.work.sum", "!pkg", "!services", "!cmd", "!deploy/cmd"},
			want: "COPY deploy/go.mod: excluded from the build context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(string(good), tt.old, tt.new, 1)
			if tt.old != "" && text == string(good) {
				t.Fatalf("the test's edit %q no longer applies to the Dockerfile", tt.old)
			}
			path := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := ParseDockerfile(path)
			if err != nil {
				t.Fatal(err)
			}
			ctx := bc
			if tt.ignore != nil {
				if ctx.Ignore, err = patternmatcher.New(tt.ignore); err != nil {
					t.Fatal(err)
				}
			}
			errs := CheckDockerfile(ctx, "gateway", d, imagePorts["gateway"])
			for _, err := range errs {
				if strings.Contains(err.Error(), tt.want) {
					return
				}
			}
			t.Errorf("no complaint mentions %q; got %v", tt.want, errs)
		})
	}
}

func TestImageVersion(t *testing.T) {
	tests := []struct {
		image, want string
		ok          bool
	}{
		{"nats:2.15.2-alpine", "v2.15.2", true},
		{"nats:2.12.6", "v2.12.6", true},
		{"registry.local:5000/nats:2.12.6", "v2.12.6", true},
		{"nats:latest", "", false},
		{"nats", "", false},
		{"registry.local:5000/nats", "", false},
		{"nats:2.12", "", false},
	}
	for _, tt := range tests {
		got, ok := ImageVersion(tt.image)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ImageVersion(%q) = %q, %v; want %q, %v", tt.image, got, ok, tt.want, tt.ok)
		}
	}
	for image, wantErr := range map[string]bool{"nats:2.12.6": false, "nats:2.12.5-alpine": true, "nats:2.15.2-alpine": false, "nats:alpine": true} {
		if err := CheckNATSImage(image); (err != nil) != wantErr {
			t.Errorf("CheckNATSImage(%q) = %v, want error %v", image, err, wantErr)
		}
	}
}
