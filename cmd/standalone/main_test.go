package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// system is the real run() on a random port, its log collected for inspection.
type system struct {
	url         string
	conversions string // the internal address: intake, JWKS, link verification
	mu          sync.Mutex
	logs        strings.Builder
	stop        func()
}

func (s *system) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func startSystem(t testing.TB, dataDir string, env map[string]string) *system {
	t.Helper()
	return startTraced(t, dataDir, env, nil)
}

// startTraced starts the system with newTracer making each service's tracer provider
// (nil: as configured by the environment, which in tests is none).
func startTraced(t testing.TB, dataDir string, env map[string]string, newTracer tracing) *system {
	t.Helper()
	vars := map[string]string{
		"DATA_DIR": dataDir, "HTTP_ADDR": "127.0.0.1:0", "LOG_FORMAT": "json",
		"SYNC_BUDGET": "5s", "SEARCH_DEADLINE": "20s", "CONVERSIONS_ADDR": "127.0.0.1:0",
	}
	for k, v := range env {
		vars[k] = v
	}
	s := &system{}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		getenv := func(k string) string { return vars[k] }
		var err error
		if newTracer == nil {
			err = run(ctx, getenv, pw)
		} else {
			err = runSystem(ctx, getenv, pw, newTracer)
		}
		pw.CloseWithError(err)
		done <- err
	}()
	addr, internal := make(chan string, 1), make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			var entry struct{ Message, API, Addr string }
			if json.Unmarshal([]byte(line), &entry) == nil {
				switch entry.Message {
				case "gateway listening":
					addr <- entry.API
				case "conversions listening":
					internal <- entry.Addr
				}
			}
		}
	}()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
			<-scanned
		})
	}
	t.Cleanup(s.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("system log:\n%s", s.Logs())
		}
	})
	for s.url == "" || s.conversions == "" {
		select {
		case a := <-addr:
			s.url = "http://" + a
		case a := <-internal:
			s.conversions = "http://" + a
		case <-time.After(30 * time.Second):
			t.Fatalf("the system did not start; log:\n%s", s.Logs())
		}
	}
	// It listens first and is ready once its streams and buckets are declared.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the system did not become ready; log:\n%s", s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *system) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res.StatusCode, out
}

const path = "/integrations/v1/api/loan_approval"

func request(id, phone, product string) string {
	return fmt.Sprintf(`{"search_id":%q,"phone_number":%q,"product_type":%q,"amount":500000.00,"term":36,"props":["from-test"]}`, id, phone, product)
}

// The spec's examples through the real binary: the demo client is approved for both
// products with complete offers, the unknown one is rejected with an empty list.
func TestSpecExamplesSync(t *testing.T) {
	sys := startSystem(t, t.TempDir(), nil)
	tests := []struct {
		name, phone, product string
		wantDecision         string
		check                func(t *testing.T, offer map[string]any)
	}{
		{name: "loan approved", phone: "9330445040", product: "loan", wantDecision: "has_approve", check: func(t *testing.T, o map[string]any) {
			amount, term := o["amount"].(map[string]any), o["term"].(map[string]any)
			if amount["min"].(float64) > 500000 || amount["max"].(float64) < 500000 {
				t.Errorf("amount %v does not hold the approved 500000", amount)
			}
			if term["min"].(float64) > 36 || term["max"].(float64) < 36 {
				t.Errorf("term %v does not hold 36", term)
			}
			pay := o["payment"].(map[string]any)
			if pay["min"].(float64) <= 0 || pay["max"].(float64) < pay["min"].(float64) {
				t.Errorf("payment = %v", pay)
			}
			rate, cost := o["rate"].(map[string]any), o["total_cost"].(map[string]any)
			if cost["min"].(float64) < rate["min"].(float64) {
				t.Errorf("total_cost %v below rate %v", cost, rate)
			}
		}},
		{name: "card approved", phone: "+7 (933) 044-50-40", product: "credit_card", wantDecision: "has_approve", check: func(t *testing.T, o map[string]any) {
			if _, ok := o["term"]; ok {
				t.Errorf("a card offer has a term: %v", o)
			}
			if o["grace_period"] == nil || o["payment"].(map[string]any)["cc_rate"] == nil {
				t.Errorf("card offer without grace period or cc_rate: %v", o)
			}
		}},
		{name: "unknown client rejected", phone: "9001112233", product: "loan", wantDecision: "rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uuid.NewString()
			status, body := sys.call(t, "POST", path, request(id, tt.phone, tt.product))
			if status != 200 || body["status"] != "done" || body["decision"] != tt.wantDecision || body["search_id"] != id {
				t.Fatalf("POST = %d %v", status, body)
			}
			data, ok := body["data"].([]any)
			if !ok {
				t.Fatalf("data is not an array: %v", body["data"])
			}
			if tt.check == nil {
				if len(data) != 0 {
					t.Fatalf("a rejection carries offers: %v", data)
				}
				return
			}
			if len(data) == 0 {
				t.Fatal("approved without offers")
			}
			for _, d := range data {
				o := d.(map[string]any)
				if o["product_type"] != tt.product {
					t.Errorf("a %s search got a %v offer", tt.product, o["product_type"])
				}
				link := o["propousal_link"].(map[string]any)["link"].(string)
				if !strings.Contains(link, "?ref=") || strings.Contains(link, id) || len(link) > 250 {
					t.Errorf("proposal link %q does not carry a reference alone, in 250 bytes", link)
				}
				tt.check(t, o)
			}
			// A retry is answered from the same record.
			_, again := sys.call(t, "POST", path, request(id, tt.phone, tt.product))
			if fmt.Sprint(again) != fmt.Sprint(body) {
				t.Errorf("retry answered differently:\n%v\n%v", again, body)
			}
		})
	}
	for _, raw := range []string{"9330445040", "0445040", "9001112233"} {
		if strings.Contains(sys.Logs(), raw) {
			t.Errorf("a raw phone number (%s) appears in the log", raw)
		}
	}
}

// The asynchronous model: the POST answers pending at once, polls reach done, and the
// answer survives a restart of the whole system on the same data directory. The demo's
// test phone decided after 3 s makes "at once" certain: a search decided within the
// milliseconds the POST takes would rightly be answered done.
func TestPolledAndDurableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	sys := startSystem(t, dir, map[string]string{"SYNC_BUDGET": "0s"})
	id := uuid.NewString()
	status, body := sys.call(t, "POST", "/api/banking/loan_approval", request(id, "9000000003", "loan"))
	if status != 200 || body["status"] != "pending" {
		t.Fatalf("POST = %d %v", status, body)
	}
	var done map[string]any
	natstest.Eventually(t, 10*time.Second, func() error {
		_, got := sys.call(t, "GET", "/api/banking/loan_approval?search_id="+id, "")
		switch got["status"] {
		case "done":
			done = got
			return nil
		case "pending":
			return fmt.Errorf("still pending")
		}
		t.Fatalf("poll = %v", got)
		return nil
	})
	if done == nil || done["decision"] != "has_approve" {
		t.Fatalf("never done: %v", done)
	}
	sys.stop()

	again := startSystem(t, dir, map[string]string{"SYNC_BUDGET": "0s"})
	status, after := again.call(t, "GET", "/integrations/api/banking/loan_approval?search_id="+id, "")
	if status != 200 || fmt.Sprint(after) != fmt.Sprint(done) {
		t.Fatalf("after restart = %d %v\nwant %v", status, after, done)
	}
}

// The standalone opens no door beyond the laptop: its embedded JetStream, which has no
// users, listens on loopback or not at all, and its demo test phones (fixed outcomes for
// anybody who knows them) are used only while its API is on loopback.
func TestNoOpenDoorsBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	err := run(context.Background(), func(k string) string {
		return map[string]string{"DATA_DIR": dir, "NATS_LISTEN": "0.0.0.0:4222"}[k]
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NATS_LISTEN") {
		t.Fatalf("an open NATS_LISTEN: %v, want it refused", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); !os.IsNotExist(err) {
		t.Errorf("the server started anyway: %v", err)
	}

	wideEnv := map[string]string{"HTTP_ADDR": "0.0.0.0:0",
		"PHONE_HASH_KEY": "42e217b2db34ef7f5c8700c404f6b1836abce421472f970ddebbd9f5c08ef5e1", "AUTH_TOKENS": "1ac87fbf92ce9a0c4e85e4ecd91d622ea8447bd75d5079dc016052e78a01fe51"}
	if err := run(context.Background(), func(k string) string {
		if k == "DATA_DIR" {
			return dir
		}
		return wideEnv[k]
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "AUDIT_PSEUDONYM_KEY") {
		t.Fatalf("the audit trail's demo key beyond loopback: %v, want it refused", err)
	}
	wideEnv["AUDIT_PSEUDONYM_KEY"] = "c7d41e6a93b2058f1d7e4a6c9b3f2e8d0a5c7e91f3b6d2a8c4e0f7b19d5a3c62"
	wide := t.TempDir()
	sys := startSystem(t, wide, wideEnv)
	if _, err := os.Stat(filepath.Join(wide, "test-phones.json")); !os.IsNotExist(err) {
		t.Errorf("the demo test phones were written for an API beyond loopback: %v", err)
	}
	if strings.Contains(sys.Logs(), "test phones configured") {
		t.Errorf("the demo test phones are in use beyond loopback:\n%s", sys.Logs())
	}
}

// The standalone provisions with the plan's settings from its environment, as `yactl
// provision` does: every file stream bounded, the laptop's bounds unless told otherwise.
func TestStreamsBoundedAsConfigured(t *testing.T) {
	natsAddr := natstest.FreeAddr(t)
	startSystem(t, t.TempDir(), map[string]string{"NATS_LISTEN": natsAddr, "SEARCH_MAX_BYTES": "128MiB"})
	_, js := natstest.JetStream(t, "nats://"+natsAddr)
	ctx := natstest.Context(t, 10*time.Second)
	for stream, want := range map[string]int64{"KV_searches": 128 << 20, "AUDIT": provision.DefaultAuditMaxBytes,
		"KV_conversions": provision.DefaultConversionsMaxBytes, "OBJ_preapprovals": provision.DefaultPreapprovalsMaxBytes} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxBytes; got != want {
			t.Errorf("%s: max_bytes %d, want %d", stream, got, want)
		}
	}
}
