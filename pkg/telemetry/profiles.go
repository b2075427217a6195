package telemetry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/demobank/yacredits/pkg/config"
)

// Sampling while profiles are served: a blocking event of 10 µs or more is recorded (shorter
// ones in proportion), and one mutex contention in 100. Both cost a little on every such
// event, so they are on only while PPROF_ADDR is set.
const (
	blockProfileRate     = 10_000 // ns
	mutexProfileFraction = 100
)

// ReadProfileAddr reads PPROF_ADDR: where Go's profiles are served (empty: nowhere). A
// loopback address only: a profile shows what the process does and holds, and an execution
// trace names what every request waited on; reach it with kubectl port-forward.
func ReadProfileAddr(r *config.Reader) string {
	addr := r.Addr("PPROF_ADDR", "")
	if addr != "" && !config.Loopback(addr) {
		r.Fail("PPROF_ADDR", "%s is beyond loopback: profiles are served on loopback only", addr)
	}
	return addr
}

// Profiles serves net/http/pprof's handlers (CPU, heap, goroutines, block, mutex, the
// execution trace) on addr, and turns block and mutex sampling on, until Close. A nil
// *Profiles (no address) does nothing.
type Profiles struct {
	srv *http.Server
	ln  net.Listener
}

// ServeProfiles starts serving profiles on addr; empty addr serves nothing.
func ServeProfiles(addr string) (*Profiles, error) {
	if addr == "" {
		return nil, nil
	}
	if !config.Loopback(addr) {
		return nil, fmt.Errorf("PPROF_ADDR %s is beyond loopback", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on PPROF_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	runtime.SetBlockProfileRate(blockProfileRate)
	runtime.SetMutexProfileFraction(mutexProfileFraction)
	// No write timeout: a CPU profile or a trace takes the seconds it is asked for.
	p := &Profiles{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Addr is where profiles are served.
func (p *Profiles) Addr() string { return p.ln.Addr().String() }

// Close stops serving and sampling.
func (p *Profiles) Close() error {
	if p == nil {
		return nil
	}
	runtime.SetBlockProfileRate(0)
	runtime.SetMutexProfileFraction(0)
	if err := p.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
