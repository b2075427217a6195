package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/logtest"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/testphones"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "0123456789abcdef0123456789abcdef"

// harness is a gateway running on a real JetStream server and a real listener.
type harness struct {
	t     testing.TB
	url   string
	srv   *natstest.Server
	js    jetstream.JetStream
	store *search.Store
	logs  *logtest.Buffer
	stop  func() // stops the gateway as SIGTERM would, and waits for Run to return
}

func testConfig() Config {
	cfg, err := LoadConfig(func(k string) string {
		return map[string]string{"HTTP_ADDR": "127.0.0.1:0", "PHONE_HASH_KEY": testKey}[k]
	})
	if err != nil {
		panic(err)
	}
	cfg.SweepInterval = 20 * time.Millisecond
	return cfg
}

func startGateway(t testing.TB, cfg Config) *harness {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	return startGatewayOn(t, cfg, srv, js)
}

func startGatewayOn(t testing.TB, cfg Config, srv *natstest.Server, js jetstream.JetStream) *harness {
	t.Helper()
	h := &harness{t: t, srv: srv, js: js, logs: &logtest.Buffer{}}
	return startWith(t, h, cfg, Deps{JS: js})
}

// startWith runs the gateway with deps, its log going to h.logs, and waits until it is ready.
func startWith(t testing.TB, h *harness, cfg Config, deps Deps) *harness {
	t.Helper()
	settings := provision.Defaults(cfg.NATS.Replicas)
	settings.SearchRetention = cfg.Retention
	return startProvisioned(t, h, cfg, deps, settings)
}

// startProvisioned is startWith after the provisioner applied settings.
func startProvisioned(t testing.TB, h *harness, cfg Config, deps Deps, settings provision.Settings) *harness {
	t.Helper()
	h.js = deps.JS
	deps.Log = zerolog.New(h.logs)
	js := deps.JS
	// What the provisioner makes before the gateway can be ready.
	provisiontest.Apply(t, js, settings)
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	deps.Listening = func(api, _ net.Addr) { addr <- api }
	go func() { done <- Run(ctx, cfg, deps) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	select {
	case a := <-addr:
		h.url = "http://" + a.String()
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	}
	var err error
	h.store, err = search.Open(ctx, js, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Listening comes first; ready once the streams and buckets are bound and the watch has
	// caught up.
	natstest.Eventually(t, 20*time.Second, func() error {
		if res := h.do("GET", "/readyz", "", ""); res.status != 200 {
			return errors.New(res.raw)
		}
		return nil
	})
	return h
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) do(method, path, contentType, body string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		h.t.Fatalf("%s %s: body is not a JSON object: %q", method, path, raw)
	}
	return out
}

func loanBody(id, phone string) string {
	return `{"search_id":"` + id + `","phone_number":"` + phone + `","product_type":"loan","amount":500000.00,"term":36}`
}

func TestErrorsAnswerInTheDocumentedShape(t *testing.T) {
	h := startGateway(t, testConfig())
	id := uuid.NewString()
	const path = "/integrations/v1/api/loan_approval"
	tests := []struct {
		name, method, path, contentType, body string
		wantStatus                            int
		wantSearchID                          string
		wantProps                             []any
		wantHeader                            [2]string
	}{
		{name: "bad fields", method: "POST", path: path, contentType: "application/json",
			body: `{"search_id":"` + id + `","phone_number":"12","product_type":"car"}`, wantStatus: 400, wantSearchID: id,
			wantProps: []any{"phone_number", "product_type"}},
		{name: "malformed json", method: "POST", path: path, body: `{"a":`, wantStatus: 400, wantProps: []any{"body"}},
		{name: "empty body", method: "POST", path: path, body: ``, wantStatus: 400, wantProps: []any{"body"}},
		{name: "duplicate key", method: "POST", path: path, body: `{"search_id":"` + id + `","search_id":"` + id + `"}`, wantStatus: 400, wantProps: []any{"body"}},
		{name: "wrong content type", method: "POST", path: path, contentType: "text/plain", body: loanBody(id, "9330445040"), wantStatus: 415},
		{name: "form content type", method: "POST", path: path, contentType: "application/x-www-form-urlencoded", body: `a=b`, wantStatus: 415},
		{name: "json with charset", method: "POST", path: path, contentType: "application/json; charset=utf-8",
			body: `{"search_id":"` + id + `"}`, wantStatus: 400, wantSearchID: id, wantProps: []any{"phone_number", "product_type"}},
		{name: "too large", method: "POST", path: path, contentType: "application/json",
			body: `{"props":["` + strings.Repeat("x", 70000) + `"]}`, wantStatus: 413},
		{name: "put", method: "PUT", path: path, body: `{}`, wantStatus: 405, wantHeader: [2]string{"Allow", "GET, POST"}},
		{name: "delete other spelling", method: "DELETE", path: "/api/banking/loan_approval", wantStatus: 405, wantHeader: [2]string{"Allow", "GET, POST"}},
		{name: "post to a health endpoint", method: "POST", path: "/healthz", wantStatus: 405, wantHeader: [2]string{"Allow", "GET"}},
		{name: "delete metrics", method: "DELETE", path: "/metrics", wantStatus: 405, wantHeader: [2]string{"Allow", "GET"}},
		{name: "get without id", method: "GET", path: path, wantStatus: 400, wantProps: []any{"search_id"}},
		{name: "get malformed id", method: "GET", path: path + "?search_id=42", wantStatus: 400, wantProps: []any{"search_id"}},
		{name: "get braced id", method: "GET", path: path + "?search_id=%7B" + id + "%7D", wantStatus: 400, wantProps: []any{"search_id"}},
		{name: "get unknown id", method: "GET", path: path + "?search_id=" + id, wantStatus: 404, wantSearchID: id},
		{name: "get unknown id in body", method: "GET", path: "/api/banking/loan_approval", body: `{"search_id":"` + id + `"}`, wantStatus: 404, wantSearchID: id},
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.do(tt.method, tt.path, tt.contentType, tt.body)
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.wantStatus, res.raw)
			}
			if res.body["search_id"] != tt.wantSearchID {
				t.Errorf("search_id = %v, want %q", res.body["search_id"], tt.wantSearchID)
			}
			if msg, _ := res.body["message"].(string); msg == "" {
				t.Errorf("no message: %s", res.raw)
			}
			if tt.wantProps != nil {
				got, _ := res.body["properties"].([]any)
				if len(got) != len(tt.wantProps) {
					t.Fatalf("properties = %v, want %v", got, tt.wantProps)
				}
				for i := range got {
					if got[i] != tt.wantProps[i] {
						t.Errorf("properties = %v, want %v", got, tt.wantProps)
					}
				}
				details, _ := res.body["details"].([]any)
				if len(details) != len(tt.wantProps) {
					t.Errorf("details = %v, want one per property", details)
				}
			}
			if tt.wantHeader[0] != "" && res.header.Get(tt.wantHeader[0]) != tt.wantHeader[1] {
				t.Errorf("%s = %q, want %q", tt.wantHeader[0], res.header.Get(tt.wantHeader[0]), tt.wantHeader[1])
			}
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
	if strings.Contains(h.logs.String(), "0445040") {
		t.Error("a phone number reached the log")
	}
}

// With no scoring running, a search stays pending: the POST falls back after the budget,
// polls say pending, and a retry is answered from the same record.
func TestPendingRetryAndConflict(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 50 * time.Millisecond
	h := startGateway(t, cfg)
	id := uuid.NewString()
	upper := strings.ToUpper(id)
	for _, path := range apiPaths {
		res := h.do("POST", path, "application/json", loanBody(upper, "8 (933) 044-50-40"))
		if res.status != 200 || res.body["status"] != "pending" || res.body["search_id"] != upper {
			t.Fatalf("POST %s = %d %s; want 200 pending echoing the id", path, res.status, res.raw)
		}
		if _, ok := res.body["decision"]; ok {
			t.Errorf("pending answer has a decision: %s", res.raw)
		}
	}
	for _, path := range apiPaths {
		res := h.do("GET", path+"?search_id="+id, "", "")
		if res.status != 200 || res.body["status"] != "pending" || res.body["search_id"] != id {
			t.Fatalf("GET %s = %d %s", path, res.status, res.raw)
		}
	}
	// Same search id, other phone: a conflict, and the stored search is untouched.
	res := h.do("POST", apiPaths[0], "application/json", loanBody(id, "9001112233"))
	if res.status != 422 || res.body["search_id"] != id {
		t.Fatalf("conflict = %d %s", res.status, res.raw)
	}
	stored, _, err := h.store.Get(context.Background(), id)
	if err != nil || stored.Request.PhoneMasked != "+7******5040" {
		t.Fatalf("stored search changed: %+v, %v", stored, err)
	}
	if stored.Request.SearchID != id || stored.Request.AsSent() != upper {
		t.Errorf("the record keeps the id as %q, spelled %q; want %q spelled %q", stored.Request.SearchID, stored.Request.AsSent(), id, upper)
	}
	// Different amount is a different request too; props are not compared.
	other := `{"search_id":"` + id + `","phone_number":"9330445040","product_type":"loan","amount":500001,"term":36}`
	if res := h.do("POST", apiPaths[0], "", other); res.status != 422 {
		t.Fatalf("amount conflict = %d %s", res.status, res.raw)
	}
	sameWithProps := `{"search_id":"` + id + `","phone_number":"9330445040","product_type":"loan","amount":500000,"term":"36","props":["x"]}`
	if res := h.do("POST", apiPaths[0], "", sameWithProps); res.status != 200 {
		t.Fatalf("retry with props = %d %s", res.status, res.raw)
	}
	// Only one request message exists however often the search was posted.
	if n := requestedCount(t, h.js, id); n != 1 {
		t.Fatalf("%d requested messages for one search, want 1", n)
	}
}

// A search that finishes within the budget is answered done by the POST itself, from the
// record the offers service created (played here by a consumer that finishes each request
// it takes off the stream, as offers does); one that finishes later is answered by the poll.
func TestDoneSyncAndPolled(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 3 * time.Second
	h := startGateway(t, cfg)
	p := startPipeline(t, h.js, h.store, 20*time.Millisecond)
	id := uuid.NewString()
	res := h.do("POST", apiPaths[1], "application/json", loanBody(id, "9330445040"))
	if res.status != 200 || res.body["status"] != "done" || res.body["decision"] != "has_approve" || res.body["name"] != "АО Демо-банк" {
		t.Fatalf("POST = %d %s; want done within the budget", res.status, res.raw)
	}
	data, _ := res.body["data"].([]any)
	if len(data) != 1 || data[0].(map[string]any)["propousal_link"] == nil {
		t.Fatalf("data = %v", res.body["data"])
	}
	if !strings.Contains(res.raw, "&offer=") {
		t.Errorf("the link's '&' is escaped in the answer: %s", res.raw)
	}
	// The common path writes the record once: created done by the offers service.
	if n := h.bucketWrites(); n != 1 {
		t.Fatalf("%d durable writes for a search done within its budget, want 1", n)
	}

	cfg.SyncBudget = 0 // pure asynchronous model
	h2 := startGatewayOn(t, cfg, h.srv, h.js)
	p.reject() // from here on the bank rejects
	id2 := uuid.NewString()
	if res := h2.do("POST", apiPaths[0], "", loanBody(id2, "9330445040")); res.body["status"] != "pending" {
		t.Fatalf("budget 0 answered %s", res.raw)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		res = h2.do("GET", apiPaths[2]+"?search_id="+id2, "", "")
		if res.status != 200 || res.body["status"] != "done" {
			return fmt.Errorf("GET = %d %s", res.status, res.raw)
		}
		return nil
	})
	if res.body["decision"] != "rejected" || !strings.Contains(res.raw, `"data":[]`) {
		t.Errorf("a rejection must carry data: [], got %s", res.raw)
	}
}

// Nothing processes the search, so it is finished as rejected at its deadline, by the
// sweeper even if nobody polls; the log says why, and the ending is counted.
func TestDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.Deadline = 300 * time.Millisecond
	cfg.RepublishAfter = 100 * time.Millisecond
	h := startGateway(t, cfg)
	id := uuid.NewString()
	h.do("POST", apiPaths[0], "", loanBody(id, "9330445040"))
	natstest.Eventually(t, 5*time.Second, func() error {
		s, _, err := h.store.Get(context.Background(), id)
		if err != nil {
			return err
		}
		if s.Status() != contracts.Done || s.Decision() != contracts.Rejected || s.Reasons[0] != contracts.ReasonDeadline {
			return errors.New("not finished at the deadline yet")
		}
		// Kept: nothing stood in its way, so no allowance past its last re-send's chance.
		if late := s.DoneAt.Sub(s.Request.RequestedAt.Add(cfg.Deadline)); late > time.Second {
			t.Fatalf("finished %s after its deadline", late)
		}
		return nil
	})
	res := h.do("GET", apiPaths[0]+"?search_id="+id, "", "")
	if res.body["status"] != "done" || res.body["decision"] != "rejected" {
		t.Fatalf("GET = %s", res.raw)
	}
	// The sweeper logs the finish after its write, so the line may trail the record a little:
	// who finished it (the deadline), never the decision or its reasons (docs/security.md).
	natstest.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(h.logs.String(), `"by":"deadline"`) {
			return errors.New("the deadline is not logged")
		}
		return nil
	})
}

// A pending record whose request message is gone (the broker lost its memory stream, or a
// gateway died between writing and publishing): the sweeper sends it again.
func TestSweeperSendsAPendingRecordWithNoMessage(t *testing.T) {
	cfg := testConfig()
	cfg.RepublishAfter = 100 * time.Millisecond
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	store, err := provisiontest.Searches(t, js, 1, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := testRequest(t, time.Minute)
	if _, err := store.CreatePending(context.Background(), contracts.NewSearch(req, "")); err != nil {
		t.Fatal(err)
	}
	startGatewayOn(t, cfg, srv, js)
	natstest.Eventually(t, 5*time.Second, func() error {
		if requestedCount(t, js, req.SearchID) != 1 {
			return errors.New("not re-sent yet")
		}
		return nil
	})
}

// The broker restarts and loses its memory stream with the search's message in it; the
// sweeper sends the search again once the broker is back and the provisioner has made the
// stream again.
func TestSweeperResendsAfterBrokerRestart(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.RepublishAfter = 200 * time.Millisecond
	h := startGateway(t, cfg)
	id := uuid.NewString()
	if res := h.do("POST", apiPaths[0], "", loanBody(id, "9330445040")); res.status != 200 {
		t.Fatalf("POST = %d %s", res.status, res.raw)
	}
	if n := requestedCount(t, h.js, id); n != 1 {
		t.Fatalf("before restart: %d messages", n)
	}
	stream, err := h.js.Stream(context.Background(), contracts.StreamLoan)
	if err != nil {
		t.Fatal(err)
	}
	before := stream.CachedInfo().Created
	h.srv.Restart()
	natstest.Eventually(t, 15*time.Second, func() error {
		if _, err := provision.Apply(context.Background(), h.js, provision.Plan(provision.Defaults(1))); err != nil {
			return err // the provisioner's next pass
		}
		s, err := h.js.Stream(context.Background(), contracts.StreamLoan)
		if err != nil {
			return err
		}
		if !s.CachedInfo().Created.After(before) {
			return errors.New("the memory stream is the old one")
		}
		if n := requestedCount(t, h.js, id); n == 0 {
			return errors.New("not re-sent after the restart")
		}
		return nil
	})
	// The search itself survived: it is on disk.
	res := h.do("GET", apiPaths[0]+"?search_id="+id, "", "")
	if res.status != 200 || res.body["status"] != "pending" {
		t.Fatalf("GET after restart = %d %s", res.status, res.raw)
	}
}

func TestUnavailableWhenJetStreamIsDown(t *testing.T) {
	cfg := testConfig()
	h := startGateway(t, cfg)
	h.srv.Shutdown()
	h.srv.WaitForShutdown()
	res := h.do("POST", apiPaths[0], "", loanBody(uuid.NewString(), "9330445040"))
	if res.status != 503 || res.header.Get("Retry-After") == "" {
		t.Fatalf("POST with JetStream down = %d %s, want 503 with Retry-After", res.status, res.raw)
	}
	if strings.Contains(res.raw, "nats") || strings.Contains(res.raw, "connection") {
		t.Errorf("internal error text reached the client: %s", res.raw)
	}
	if res := h.do("GET", "/readyz", "", ""); res.status != 503 {
		t.Errorf("readyz with JetStream down = %d", res.status)
	}
}

func TestAuthentication(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.Auth = Auth{Tokens: []string{"t0ken"}, ClientID: "yandex", ClientSecret: "s3cret"}
	h := startGateway(t, cfg)
	body := loanBody(uuid.NewString(), "9330445040")
	tests := []struct {
		name, header string
		want         int
	}{
		{"none", "", 403},
		{"wrong bearer", "Bearer nope", 403},
		{"bearer", "Bearer t0ken", 200},
		{"basic", "Basic eWFuZGV4OnMzY3JldA==", 200},           // yandex:s3cret
		{"wrong basic", "Basic eWFuZGV4Om5vcGU=", 403},         // yandex:nope
		{"token as basic password", "Basic Ojp0MGtlbg==", 403}, // ::t0ken
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", h.url+apiPaths[0], strings.NewReader(body))
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
	if res := h.do("GET", "/healthz", "", ""); res.status != 200 {
		t.Errorf("healthz behind auth: %d", res.status)
	}
	if res := h.do("GET", "/readyz", "", ""); res.status != 200 {
		t.Errorf("readyz = %d %s", res.status, res.raw)
	}
}

func TestAllowedNetworksAndRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.Auth.AllowedNetworks = mustPrefixes(t, "203.0.113.0/24")
	h := startGateway(t, cfg)
	if res := h.do("GET", apiPaths[0]+"?search_id="+uuid.NewString(), "", ""); res.status != 403 {
		t.Fatalf("loopback outside the allow-list = %d", res.status)
	}
	cfg.Auth.AllowedNetworks = mustPrefixes(t, "127.0.0.0/8")
	cfg.RateLimit, cfg.RateBurst = 0.001, 2
	h2 := startGatewayOn(t, cfg, h.srv, h.js)
	var statuses []int
	for i := 0; i < 3; i++ {
		statuses = append(statuses, h2.do("GET", apiPaths[0]+"?search_id="+uuid.NewString(), "", "").status)
	}
	if statuses[0] != 404 || statuses[1] != 404 || statuses[2] != 429 {
		t.Fatalf("statuses = %v, want [404 404 429]", statuses)
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := LoadConfig(func(k string) string {
		return map[string]string{"SYNC_BUDGET": "forever", "PHONE_HASH_KEY": "short", "AUTH_CLIENT_ID": "x", "NATS_REPLICAS": "7"}[k]
	})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, name := range []string{"SYNC_BUDGET", "PHONE_HASH_KEY", "AUTH_CLIENT_ID", "NATS_REPLICAS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func checkpoint(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	marks, err := js.KeyValue(context.Background(), contracts.BucketGateway)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := loadCheckpoint(context.Background(), marks)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// The checkpoint a restarted gateway resumes from never moves back: not when it restarts
// with no traffic before its first sweep, and not when it does so twice in a row (it went
// back to revision 1, so the next restart replayed the whole retained bucket).
func TestCheckpointNeverMovesBack(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	h := startGateway(t, cfg)
	for range 5 {
		h.do("POST", apiPaths[0], "", loanBody(uuid.NewString(), "9330445040"))
	}
	// Finished, so that nothing is pending and the checkpoint is past all five.
	for _, s := range pendingSearches(t, h) {
		if _, err := h.store.FinishAtDeadline(context.Background(), s, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if cp := checkpoint(t, h.js); cp <= 5 {
			return fmt.Errorf("checkpoint %d, want past the five records", cp)
		}
		return nil
	})
	saved := checkpoint(t, h.js)
	h.stop()
	for restart := range 2 {
		g := startGatewayOn(t, cfg, h.srv, h.js)
		time.Sleep(5 * cfg.SweepInterval) // idle sweeps: what an idle restart does
		g.stop()
		if cp := checkpoint(t, h.js); cp < saved {
			t.Fatalf("idle restart %d moved the checkpoint back from %d to %d", restart+1, saved, cp)
		}
	}
}

// pendingSearches lists the ids of the bucket's pending records.
func pendingSearches(t *testing.T, h *harness) []string {
	t.Helper()
	kv, err := h.js.KeyValue(context.Background(), contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		if s, _, err := h.store.Get(context.Background(), k); err == nil && s.Status() == contracts.Pending {
			out = append(out, k)
		}
	}
	return out
}

// With a thousand overdue searches to sweep, a search done in 20 ms is still answered done
// by its POST: sweeping never runs on the goroutine that wakes waiting POSTs.
func TestSweepingNeverDelaysAnswers(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 1500 * time.Millisecond
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	store, err := provisiontest.Searches(t, js, 1, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 125 {
				req := testRequest(t, time.Second)
				req.RequestedAt, req.Deadline = req.RequestedAt.Add(-10*time.Minute), req.Deadline.Add(-10*time.Minute)
				if _, err := store.CreatePending(context.Background(), contracts.NewSearch(req, "")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	h := startGatewayOn(t, cfg, srv, js)
	startPipeline(t, js, store, 20*time.Millisecond)
	for range 5 {
		start := time.Now()
		res := h.do("POST", apiPaths[0], "", loanBody(uuid.NewString(), "9330445040"))
		if res.body["status"] != "done" || time.Since(start) > time.Second {
			t.Fatalf("answered %s after %s while the sweeper had 1000 overdue searches", res.body["status"], time.Since(start))
		}
	}
}

// On SIGTERM the gateway stops taking requests, and the POSTs in flight still get their
// answer: the watch that wakes them stops only after HTTP has drained.
func TestShutdownAnswersPOSTsInFlight(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 3 * time.Second
	h := startGateway(t, cfg)
	startPipeline(t, h.js, h.store, 500*time.Millisecond)
	results := make(chan response, 3)
	for range 3 {
		go func() { results <- h.do("POST", apiPaths[0], "", loanBody(uuid.NewString(), "9330445040")) }()
	}
	time.Sleep(200 * time.Millisecond) // the POSTs are waiting for their searches
	h.stop()
	for range 3 {
		if res := <-results; res.status != 200 || res.body["status"] != "done" {
			t.Fatalf("a POST in flight at shutdown answered %d %s", res.status, res.raw)
		}
	}
}

// A gateway whose watch of the bucket keeps failing is not ready, although JetStream answers
// and its stream and buckets are there: without the watch no POST is answered done. Here
// its NATS user may not create the watch's consumer.
func TestReadyzIncludesTheWatch(t *testing.T) {
	srv := natstest.RunServerWith(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "gateway", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.CONSUMER.CREATE.KV_searches.>"}},
		}}}
	})
	nc := natstest.Connect(t, "nats://gateway:pw@"+srv.Addr().String())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, logs: &logtest.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, testConfig(), Deps{JS: js, Log: zerolog.New(h.logs), Listening: func(api, _ net.Addr) { addr <- api }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	h.url = "http://" + (<-addr).String()
	// Set up, yet not ready: the watch is what is missing.
	natstest.Eventually(t, 10*time.Second, func() error {
		if res := h.do("GET", "/readyz", "", ""); !strings.Contains(res.raw, "watch") {
			return errors.New(res.raw)
		}
		return nil
	})
	for range 3 {
		res := h.do("GET", "/readyz", "", "")
		if res.status != 503 || !strings.Contains(res.raw, "watch") {
			t.Fatalf("readyz = %d %s, want 503 naming the watch", res.status, res.raw)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Fifty concurrent first POSTs of one search id, over two gateways of a three-node cluster,
// are all answered 200 from the one record, never 503 (the losing creates see the id taken
// before the winning write is readable). Twenty ids, each budget short enough that the
// POSTs race to write the pending record.
func TestConcurrentFirstPOSTsAreNeverUnavailable(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	cfg := testConfig()
	cfg.NATS.Replicas = 3
	cfg.SyncBudget = 30 * time.Millisecond
	_, js1 := natstest.JetStream(t, c.URLs())
	_, js2 := natstest.JetStream(t, c.URLs())
	gws := []*harness{startGatewayOn(t, cfg, nil, js1), startGatewayOn(t, cfg, nil, js2)}
	startPipeline(t, js1, gws[0].store, 50*time.Millisecond)
	for range 20 {
		id := uuid.NewString()
		var wg sync.WaitGroup
		answers := make(chan response, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers <- gws[i%2].do("POST", apiPaths[0], "", loanBody(id, "9330445040"))
			}()
		}
		wg.Wait()
		close(answers)
		for res := range answers {
			if res.status != 200 {
				t.Fatalf("a concurrent first POST answered %d %s\n%s\n%s", res.status, res.raw, gws[0].logs, gws[1].logs)
			}
		}
	}
}

// A different request under an id this gateway is still working on, before any record
// exists, is a conflict at once; the first one is answered as if alone.
func TestAnotherRequestInFlightIsAConflict(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = time.Second
	h := startGateway(t, cfg)
	id := uuid.NewString()
	first := make(chan response, 1)
	go func() { first <- h.do("POST", apiPaths[0], "", loanBody(id, "9330445040")) }()
	natstest.Eventually(t, 5*time.Second, func() error {
		if requestedCount(t, h.js, id) != 1 {
			return errors.New("the first request is not in flight yet")
		}
		return nil
	})
	start := time.Now()
	res := h.do("POST", apiPaths[0], "", loanBody(id, "9001112233"))
	if res.status != 422 || time.Since(start) > cfg.SyncBudget/2 {
		t.Fatalf("another request in flight = %d after %s, want 422 at once", res.status, time.Since(start))
	}
	if res := <-first; res.status != 200 || res.body["status"] != "pending" {
		t.Fatalf("the first request = %d %s", res.status, res.raw)
	}
	if n := requestedCount(t, h.js, id); n != 1 {
		t.Fatalf("%d request messages, want the first one only", n)
	}
}

// A test phone's search (TEST_PHONES) is marked as a test in its record, which every
// later stage and the metrics read, and in the request's log line; any other phone's is not.
func TestTestPhonesAreMarked(t *testing.T) {
	cfg := testConfig()
	cfg.TestPhones = filepath.Join(t.TempDir(), "test-phones.json")
	if err := os.WriteFile(cfg.TestPhones, testphones.Demo(), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startGateway(t, cfg)
	startPipeline(t, h.js, h.store, 0)
	for _, tc := range []struct {
		phone string
		test  bool
	}{{"+7 900 000-00-01", true}, {"9330445040", false}} {
		id := uuid.NewString()
		if res := h.do("POST", apiPaths[0], "", loanBody(id, tc.phone)); res.status != 200 {
			t.Fatalf("POST = %d %s", res.status, res.raw)
		}
		s, _, err := h.store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Request.Test != tc.test {
			t.Errorf("%s: record marked test = %v, want %v", tc.phone, s.Request.Test, tc.test)
		}
		var line string
		natstest.Eventually(t, 5*time.Second, func() error {
			for _, l := range strings.Split(h.logs.String(), "\n") {
				if strings.Contains(l, `"message":"http request"`) && strings.Contains(l, id) {
					line = l
					return nil
				}
			}
			return errors.New("no log line for the request yet")
		})
		if strings.Contains(line, `"test":true`) != tc.test {
			t.Errorf("%s: log line %s, want test marked %v", tc.phone, line, tc.test)
		}
	}
	// A file that is not valid stops the start, naming the problem.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"phones":[{"phone":"12","outcome":"reject"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.TestPhones = bad
	err := Run(context.Background(), cfg, Deps{JS: h.js, Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "phones[0]: phone") {
		t.Fatalf("Run with a bad TEST_PHONES = %v", err)
	}
}

// startBounded runs a gateway, with the pipeline finishing its searches at once, on a server
// provisioned with the bounds bound sets.
func startBounded(t *testing.T, cfg Config, bound func(*provision.Settings)) *harness {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	settings := provision.Defaults(cfg.NATS.Replicas)
	settings.SearchRetention = cfg.Retention
	bound(&settings)
	h := startProvisioned(t, &harness{t: t, srv: srv, js: js, logs: &logtest.Buffer{}}, cfg, Deps{JS: js}, settings)
	startPipeline(t, h.js, h.store, 0)
	return h
}

// A searches bucket nearly full refuses new searches with a 503 and a Retry-After, before
// anything is accepted, and keeps the room the searches it accepted need to finish: every
// search answered 200 reaches done, a retry of one is still answered, and nothing is a 500.
func TestNearlyFullBucketRefusesNewSearchesAndFinishesAccepted(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0 // every search answered pending first: accepted, with its done record to come
	h := startBounded(t, cfg, func(s *provision.Settings) { s.SearchMaxBytes = 256 << 10 })
	js := h.js

	var accepted []string
	var refused response
	for range 2000 {
		id := uuid.NewString()
		res := h.do("POST", apiPaths[0], "application/json", loanBody(id, "9330445040"))
		if res.status == 503 {
			refused = res
			break
		}
		if res.status != 200 {
			t.Fatalf("POST %d: %d %s", len(accepted), res.status, res.raw)
		}
		accepted = append(accepted, id)
		natstest.Eventually(t, 5*time.Second, func() error { // one at a time: the fill is read every sweep
			if res := h.do("GET", apiPaths[2]+"?search_id="+id, "", ""); res.body["status"] != "done" {
				return fmt.Errorf("GET = %d %s", res.status, res.raw)
			}
			return nil
		})
	}
	if refused.status != 503 {
		t.Fatalf("%d searches taken by a bucket of 256KiB and none refused", len(accepted))
	}
	if len(accepted) < 20 {
		t.Fatalf("refused after %d searches: %s", len(accepted), refused.raw)
	}
	if got := refused.header.Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After = %q, want 60", got)
	}
	if refused.body["message"] == nil || refused.body["search_id"] == nil {
		t.Errorf("the refusal is not in the documented shape: %s", refused.raw)
	}
	// Every search answered 200 is done, and a retry of one is answered from its record.
	for _, id := range accepted {
		if res := h.do("GET", apiPaths[2]+"?search_id="+id, "", ""); res.status != 200 || res.body["status"] != "done" {
			t.Fatalf("accepted search %s: %d %s", id, res.status, res.raw)
		}
	}
	if res := h.do("POST", apiPaths[0], "application/json", loanBody(accepted[0], "9330445040")); res.status != 200 || res.body["status"] != "done" {
		t.Errorf("a retry while the bucket is full: %d %s", res.status, res.raw)
	}
	st, err := js.Stream(context.Background(), "KV_"+contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	if info := st.CachedInfo(); info.State.Bytes >= uint64(info.Config.MaxBytes) {
		t.Errorf("the bucket filled to its bound (%d of %d bytes): no room was kept", info.State.Bytes, info.Config.MaxBytes)
	}
}

// No search is taken whose decision the audit trail could not keep: a trail nearly full
// refuses new searches as a full bucket does.
func TestNearlyFullAuditTrailRefusesNewSearches(t *testing.T) {
	cfg := testConfig()
	h := startBounded(t, cfg, func(s *provision.Settings) { s.AuditMaxBytes = 64 << 10 })
	js := h.js
	first := uuid.NewString()
	if res := h.do("POST", apiPaths[0], "application/json", loanBody(first, "9330445040")); res.status != 200 {
		t.Fatalf("POST before the trail fills: %d %s", res.status, res.raw)
	}
	ctx := natstest.Context(t, 10*time.Second)
	for range 15 { // 60KiB of the trail's 64KiB
		if _, err := js.Publish(ctx, contracts.SubjectAudit, make([]byte, 4<<10)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		res := h.do("POST", apiPaths[0], "application/json", loanBody(uuid.NewString(), "9330445040"))
		if res.status != 503 || res.header.Get("Retry-After") != "60" {
			return fmt.Errorf("POST with the trail at 94%%: %d %s", res.status, res.raw)
		}
		return nil
	})
	if res := h.do("POST", apiPaths[0], "application/json", loanBody(first, "9330445040")); res.status != 200 {
		t.Errorf("a retry of a search taken before: %d %s", res.status, res.raw)
	}
}

// A rotation of the phone-hash key: a gateway given the new key and the earlier one hashes
// new searches under the new key, naming it, with the phone's hash under the earlier key for
// a snapshot still made with it; and answers a retry of a search stored under the earlier
// key from its record, where a retry with another phone is still a conflict (422). Once the
// earlier key is dropped (its searches past their retention), such a retry is a conflict.
func TestRotatedPhoneKey(t *testing.T) {
	oldKey, newKey := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	cfg := testConfig()
	cfg.SyncBudget = 3 * time.Second
	cfg.PhoneHashKey = []byte(oldKey)
	before := startGateway(t, cfg)
	p := startPipeline(t, before.js, before.store, 0)
	id := uuid.NewString()
	if res := before.do("POST", apiPaths[0], "application/json", loanBody(id, "9330445040")); res.body["status"] != "done" {
		t.Fatalf("POST under the earlier key: %s", res.raw)
	}
	oldRing, _ := phone.NewKeyring([]byte(oldKey))
	n, _ := phone.Parse("9330445040")

	cfg.PhoneHashKey, cfg.PhoneHashKeysOld = []byte(newKey), [][]byte{[]byte(oldKey)}
	after := startGatewayOn(t, cfg, before.srv, before.js)
	if res := after.do("POST", apiPaths[0], "application/json", loanBody(id, "9330445040")); res.status != 200 || res.body["status"] != "done" {
		t.Fatalf("a retry of a search stored under the earlier key: %d %s", res.status, res.raw)
	}
	if res := after.do("POST", apiPaths[0], "application/json", loanBody(id, "9330445041")); res.status != 422 {
		t.Fatalf("a retry with another phone: %d %s", res.status, res.raw)
	}
	fresh := uuid.NewString()
	if res := after.do("POST", apiPaths[0], "application/json", loanBody(fresh, "9330445040")); res.body["status"] != "done" {
		t.Fatalf("a new search: %s", res.raw)
	}
	newRing, _ := phone.NewKeyring([]byte(newKey))
	req := p.last.Load()
	if req == nil || req.SearchID != fresh || req.PhoneKey != newRing.Current().ID() ||
		req.PhoneHash != newRing.Current().Hex(n) || req.EarlierHashes[oldRing.Current().ID()] != oldRing.Current().Hex(n) {
		t.Fatalf("the new search's request: %+v", req)
	}
	rec, _, err := after.store.Answer(context.Background(), fresh)
	if err != nil || rec.Request.PhoneKey != newRing.Current().ID() {
		t.Fatalf("the new search's record names key %q, want %q (%v)", rec.Request.PhoneKey, newRing.Current().ID(), err)
	}

	cfg.PhoneHashKeysOld = nil
	dropped := startGatewayOn(t, cfg, before.srv, before.js)
	if res := dropped.do("POST", apiPaths[0], "application/json", loanBody(id, "9330445040")); res.status != 422 {
		t.Fatalf("a retry under a key no longer held: %d %s", res.status, res.raw)
	}
}
