package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEndpoints(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	mux := http.NewServeMux()
	snapshot := errors.New("no snapshot loaded yet")
	Register(mux, List(append(JetStream(js, []string{"S"}, nil), Func("snapshot", func() error { return snapshot }))...))
	ts := httptest.NewServer(mux)
	defer ts.Close()
	get := func(path string) (int, string) {
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	// Every dependency is reported, the missing ones named first.
	code, body := get("/readyz")
	var rep Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz body: %v\n%s", err, body)
	}
	if code != 503 || rep.Status != "not ready" || !slices.Equal(rep.Failing, []string{"stream S", "snapshot"}) ||
		len(rep.Checks) != 3 || !rep.Checks[0].Ready || rep.Checks[0].Name != "nats" ||
		rep.Checks[1].Ready || !strings.Contains(rep.Checks[1].Detail, "not found") ||
		rep.Checks[2].Detail != "no snapshot loaded yet" {
		t.Fatalf("readyz without the stream and the snapshot = %d %s", code, body)
	}
	if _, err := js.CreateStream(context.Background(), jsStream("S")); err != nil {
		t.Fatal(err)
	}
	code, body = get("/readyz")
	rep = Report{}
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 503 || !slices.Equal(rep.Failing, []string{"snapshot"}) {
		t.Fatalf("readyz with the stream = %d %s", code, body)
	}
	snapshot = nil
	code, body = get("/readyz")
	rep = Report{}
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 || rep.Status != "ready" || len(rep.Failing) != 0 ||
		rep.Checks[1].Detail != "0 messages" {
		t.Fatalf("readyz = %d %s", code, body)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", http.NewServeMux()) }()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}
func jsStream(name string) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: jetstream.MemoryStorage}
}
