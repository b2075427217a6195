//go:build unix

// Package topology runs the system as production runs it, from real binaries on loopback:
// a NATS JetStream cluster of nats-server processes (built from the nats-server/v2 module
// the project pins), and the gateway, scoring and offers services as separate processes
// configured only through their documented environment variables; or the standalone
// binary on a data directory. Faults are real: signals to processes, and TCP proxies that
// stop forwarding. The fault suite (tools/chaos) and the load generator build on it.
package topology

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Binaries are the programs a topology runs, by name.
type Binaries struct{ Dir string }

// Path is the binary called name.
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// Programs are the packages Build compiles, each into a binary named for its last element.
var Programs = []string{
	"github.com/nats-io/nats-server/v2",
	"github.com/demobank/yacredits/services/gateway/cmd/gateway",
	"github.com/demobank/yacredits/services/scoring/cmd/scoring",
	"github.com/demobank/yacredits/services/offers/cmd/offers",
	"github.com/demobank/yacredits/cmd/standalone",
	"github.com/demobank/yacredits/cmd/yactl",
}

// Build compiles programs (all of Programs when none is named) into dir with the go command
// that runs this program, from the workspace it is run in; the build cache makes a second
// build take seconds.
func Build(ctx context.Context, dir string, programs ...string) (Binaries, error) {
	if len(programs) == 0 {
		programs = Programs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, programs...)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return Binaries{Dir: dir}, nil
}
