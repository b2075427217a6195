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

func TestDockerfile(t *testing.T) {
	bc, err := NewBuildContext(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range Services {
		t.Run(svc.Name, func(t *testing.T) {
			d, err := ParseDockerfile(filepath.Join(root, "Dockerfile"), map[string]string{"SERVICE": svc.Name})
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

// The base images are build arguments: given, they replace the defaults, as --build-arg does.
func TestDockerfileBaseImagesAreArguments(t *testing.T) {
	path := filepath.Join(root, "Dockerfile")
	d, err := ParseDockerfile(path, map[string]string{"SERVICE": "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Stages[0].From; got != "golang:1.26.8" {
		t.Errorf("default builder = %q, want golang:1.26.8 (GO_VERSION's default expanded)", got)
	}
	d, err = ParseDockerfile(path, map[string]string{"SERVICE": "gateway", "BUILDER_IMAGE": "local/go:1", "RUNTIME_IMAGE": "local/static:1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Stages[0].From != "local/go:1" || d.Final().From != "local/static:1" {
		t.Errorf("stages from %q and %q, want the build arguments", d.Stages[0].From, d.Final().From)
	}
}

func TestDockerfileChecksCatchBreakage(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
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
		args           map[string]string
		want           string
	}{
		{name: "runtime with a shell", old: "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot", new: "ARG RUNTIME_IMAGE=alpine:3.22", want: "runtime image is alpine"},
		{name: "runtime overridden", args: map[string]string{"RUNTIME_IMAGE": "debian:13"}, want: "runtime image is debian:13"},
		{name: "runs as root", old: "USER 65532:65532", new: "USER root", want: "non-root USER"},
		{name: "no USER at all", old: "USER 65532:65532\n", new: "", want: "non-root USER"},
		{name: "cgo", old: "CGO_ENABLED=0", new: "CGO_ENABLED=1", want: "CGO_ENABLED=0"},
		{name: "paths baked in", old: "go build -trimpath", new: "go build", want: "-trimpath"},
		{name: "another service built", old: "./services/${SERVICE}/cmd/${SERVICE}", new: "./services/offers/cmd/offers", want: "./services/gateway/cmd/gateway"},
		{name: "a workspace module left out", old: "COPY cmd/ cmd/\n", new: "", want: "does not COPY cmd/go.mod"},
		{name: "tools module left out", old: "COPY tools/go.mod tools/go.sum tools/\n", new: "", want: "does not COPY tools/go.mod"},
		{name: "port not exposed", old: "EXPOSE 8080 8081 8090", new: "EXPOSE 8081 8090", want: "does not EXPOSE 8080"},
		{name: "entrypoint not installed", old: `ENTRYPOINT ["/service"]`, new: `ENTRYPOINT ["/gateway"]`, want: "ENTRYPOINT runs /gateway"},
		{name: "copies what is not there", old: "COPY pkg/ pkg/", new: "COPY pkg/ pkg/\nCOPY vendor/ vendor/", want: "COPY vendor/: not in the repository"},
		{name: "BuildKit's linter: casing", old: "AS build", new: "as build", want: "BuildKit's linter: FromAsCasing"},
		{name: "BuildKit's linter: stage name", old: "AS build", new: "AS Build", want: "BuildKit's linter: StageNameCasing"},
		{name: "shell-form entrypoint", old: `ENTRYPOINT ["/service"]`, new: `ENTRYPOINT /service`, want: "shell form"},
		{name: "context without a module file", ignore: []string{"*", "!go.work", "!go.work.sum", "!pkg", "!services", "!cmd", "!deploy/cmd", "!tools"},
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
			args := map[string]string{"SERVICE": "gateway"}
			for k, v := range tt.args {
				args[k] = v
			}
			d, err := ParseDockerfile(path, args)
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
