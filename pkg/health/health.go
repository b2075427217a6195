// Package health serves the liveness and readiness endpoints every service exposes to its
// orchestrator: /healthz answers while the process runs, /readyz only while the service
// can do its work (JetStream reachable, its streams, consumers and buckets in place).
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Check reports why the service is not ready, or nil.
type Check func(ctx context.Context) error

// Handler serves /healthz, /readyz and, when metrics is not nil, /metrics: the
// operational endpoints of a worker service.
func Handler(ready Check, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	Register(mux, ready)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

// Register serves /healthz and /readyz on mux.
func Register(mux *http.ServeMux, ready Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			write(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		write(w, http.StatusOK, "ok", "")
	})
}

func write(w http.ResponseWriter, status int, state, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]string{"status": state}
	if reason != "" {
		body["reason"] = reason // our own infrastructure's words, never a request's data
	}
	_ = json.NewEncoder(w).Encode(body)
}

// JetStream is a readiness check: connected, and every named stream and bucket exists.
func JetStream(js jetstream.JetStream, streams, buckets []string) Check {
	return func(ctx context.Context) error {
		if js.Conn().Status() != nats.CONNECTED {
			return errors.New("not connected to NATS")
		}
		for _, s := range streams {
			if _, err := js.Stream(ctx, s); err != nil {
				return fmt.Errorf("stream %s: %w", s, err)
			}
		}
		for _, b := range buckets {
			if _, err := js.KeyValue(ctx, b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return nil
	}
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
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
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
