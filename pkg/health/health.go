// Package health serves the liveness and readiness endpoints every service exposes to its
// orchestrator: /healthz answers while the process runs, /readyz only while the service
// can do its work (JetStream reachable, its streams, consumers and buckets in place), and
// says, per dependency, what is there and what is missing.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Check looks at one dependency of a service. Probe returns a detail for people (a count,
// a revision, an age) when the dependency is ready, and an error saying what is wrong when
// it is not.
type Check struct {
	Name  string
	Probe func(ctx context.Context) (detail string, err error)
}

// Func makes a Check of a probe that only says yes or no.
func Func(name string, ready func() error) Check {
	return Check{Name: name, Probe: func(context.Context) (string, error) { return "", ready() }}
}

// Report is the /readyz document: every dependency with its state, the failing ones
// named again at the top so that a person (or a probe's log) sees them first.
type Report struct {
	Status  string   `json:"status"` // "ready" or "not ready"
	Failing []string `json:"failing,omitempty"`
	Checks  []Item   `json:"checks"`
}

// Item is one dependency's state.
type Item struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"` // our own infrastructure's words, never a request's data
}

// Evaluate runs every check at once, so that one slow dependency costs its own check and
// not the others' time, and reports them in order.
func Evaluate(ctx context.Context, checks []Check) Report {
	items := make([]Item, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			detail, err := c.Probe(ctx)
			items[i] = Item{Name: c.Name, Ready: err == nil, Detail: detail}
			if err != nil {
				items[i].Detail = err.Error()
			}
		}()
	}
	wg.Wait()
	r := Report{Status: "ready", Checks: items}
	for _, it := range items {
		if !it.Ready {
			r.Failing = append(r.Failing, it.Name)
			r.Status = "not ready"
		}
	}
	return r
}

// Handler serves /healthz, /readyz and, when metrics is not nil, /metrics: the
// operational endpoints of a worker service. checks is called at every /readyz, so that
// the list may grow (the standalone binary adds its other services' once they are made).
func Handler(checks func() []Check, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	Register(mux, checks)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

// Register serves /healthz and /readyz on mux. /readyz answers 200 when every check is
// ready and 503 otherwise (what probes read), with the Report as its body (what people read).
func Register(mux *http.ServeMux, checks func() []Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rep := Evaluate(ctx, checks())
		status := http.StatusOK
		if len(rep.Failing) > 0 {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, rep)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// List is a fixed list of checks, for Handler and Register.
func List(checks ...Check) func() []Check { return func() []Check { return checks } }

// Named returns checks with prefix before each name: one process serving several
// services' checks tells them apart.
func Named(prefix string, checks []Check) []Check {
	out := make([]Check, len(checks))
	for i, c := range checks {
		out[i] = Check{Name: prefix + c.Name, Probe: c.Probe}
	}
	return out
}

// JetStream returns the checks of a JetStream client: connected, and each named stream
// (with its message count) and bucket present.
func JetStream(js jetstream.JetStream, streams, buckets []string) []Check {
	checks := []Check{{Name: "nats", Probe: func(context.Context) (string, error) {
		nc := js.Conn()
		if st := nc.Status(); st != nats.CONNECTED {
			return "", fmt.Errorf("not connected to NATS (%s)", st)
		}
		return "connected to " + nc.ConnectedServerName(), nil
	}}}
	for _, s := range streams {
		checks = append(checks, Check{Name: "stream " + s, Probe: func(ctx context.Context) (string, error) {
			st, err := js.Stream(ctx, s)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d messages", st.CachedInfo().State.Msgs), nil
		}})
	}
	for _, b := range buckets {
		checks = append(checks, Check{Name: "bucket " + b, Probe: func(ctx context.Context) (string, error) {
			kv, err := js.KeyValue(ctx, b)
			if err != nil {
				return "", err
			}
			st, err := kv.Status(ctx)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d values", st.Values()), nil
		}})
	}
	return checks
}

// Consumer is the check of a durable consumer of stream: present, with its backlog (how
// many messages wait and how many are being worked on) as the detail. A backlog is for
// people and dashboards to judge; only a missing consumer makes the service not ready.
func Consumer(js jetstream.JetStream, stream, name string) Check {
	return Check{Name: "consumer " + name, Probe: func(ctx context.Context) (string, error) {
		c, err := js.Consumer(ctx, stream, name)
		if err != nil {
			return "", err
		}
		info := c.CachedInfo()
		return fmt.Sprintf("backlog %d waiting, %d in flight, %d redelivered", info.NumPending, info.NumAckPending, info.NumRedelivered), nil
	}}
}

// Serve serves h on addr until ctx is cancelled. An empty addr serves nothing and waits.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h)
}

// ServeListener is Serve on a listener already open (one on port 0, whose address the
// caller reads first).
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	addr := ln.Addr().String()
	// Slow clients are cut off: headers in 5 s, a whole request in 10, an answer in 30.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
