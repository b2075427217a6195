package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/kvstore"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "0123456789abcdef0123456789abcdef"

// harness is a gateway running on a real JetStream server and a real listener.
type harness struct {
	t     *testing.T
	url   string
	srv   *natstest.Server
	js    jetstream.JetStream
	store *kvstore.Store
	logs  *syncWriter
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

func startGateway(t *testing.T, cfg Config) *harness {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	return startGatewayOn(t, cfg, srv, js)
}

func startGatewayOn(t *testing.T, cfg Config, srv *natstest.Server, js jetstream.JetStream) *harness {
	t.Helper()
	h := &harness{t: t, srv: srv, js: js, logs: &syncWriter{buf: &bytes.Buffer{}}}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{JS: js, Log: zerolog.New(h.logs),
			Listening: func(api, _ net.Addr) { addr <- api }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case a := <-addr:
		h.url = "http://" + a.String()
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	}
	var err error
	h.store, err = kvstore.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
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
		{name: "malformed json", method: "POST", path: path, body: `{"a":`, wantStatus: 400},
		{name: "empty body", method: "POST", path: path, body: ``, wantStatus: 400},
		{name: "wrong content type", method: "POST", path: path, contentType: "text/plain", body: loanBody(id, "9330445040"), wantStatus: 415},
		{name: "form content type", method: "POST", path: path, contentType: "application/x-www-form-urlencoded", body: `a=b`, wantStatus: 415},
		{name: "json with charset", method: "POST", path: path, contentType: "application/json; charset=utf-8",
			body: `{"search_id":"` + id + `"}`, wantStatus: 400, wantSearchID: id, wantProps: []any{"phone_number", "product_type"}},
		{name: "too large", method: "POST", path: path, contentType: "application/json",
			body: `{"props":["` + strings.Repeat("x", 70000) + `"]}`, wantStatus: 413},
		{name: "put", method: "PUT", path: path, body: `{}`, wantStatus: 405, wantHeader: [2]string{"Allow", "GET, POST"}},
		{name: "delete other spelling", method: "DELETE", path: "/api/banking/loan_approval", wantStatus: 405, wantHeader: [2]string{"Allow", "GET, POST"}},
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
	if err != nil || stored.Request.PhoneMasked != "+7933***5040" {
		t.Fatalf("stored search changed: %+v, %v", stored, err)
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

// A search that finishes within the budget is answered done by the POST itself; one that
// finishes later is answered done by the poll. The offers service is played here by a
// write to the bucket, the same write it makes.
func TestDoneSyncAndPolled(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 3 * time.Second
	h := startGateway(t, cfg)
	id := uuid.NewString()
	go func() {
		natstest.Eventually(t, 5*time.Second, func() error {
			_, err := h.store.Finish(context.Background(), id, []contracts.Offer{testOffer(id)}, nil, time.Now())
			return err
		})
	}()
	res := h.do("POST", apiPaths[1], "application/json", loanBody(id, "9330445040"))
	if res.status != 200 || res.body["status"] != "done" || res.body["decision"] != "has_approve" || res.body["name"] != "АО Демо-банк" {
		t.Fatalf("POST = %d %s; want done within the budget", res.status, res.raw)
	}
	data, _ := res.body["data"].([]any)
	if len(data) != 1 || data[0].(map[string]any)["propousal_link"] == nil {
		t.Fatalf("data = %v", res.body["data"])
	}

	cfg.SyncBudget = 0 // pure asynchronous model
	h2 := startGatewayOn(t, cfg, h.srv, h.js)
	id2 := uuid.NewString()
	if res := h2.do("POST", apiPaths[0], "", loanBody(id2, "9330445040")); res.body["status"] != "pending" {
		t.Fatalf("budget 0 answered %s", res.raw)
	}
	if _, err := h.store.Finish(context.Background(), id2, nil, []string{"test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	res = h2.do("GET", apiPaths[2]+"?search_id="+id2, "", "")
	if res.status != 200 || res.body["status"] != "done" || res.body["decision"] != "rejected" || res.raw == "" {
		t.Fatalf("GET = %d %s", res.status, res.raw)
	}
	if !strings.Contains(res.raw, `"data":[]`) {
		t.Errorf("a rejection must carry data: [], got %s", res.raw)
	}
}

// Nothing processes the search, so it is finished as rejected at its deadline, by the
// sweeper even if nobody polls, and the log says why.
func TestDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.Deadline = 300 * time.Millisecond
	h := startGateway(t, cfg)
	id := uuid.NewString()
	h.do("POST", apiPaths[0], "", loanBody(id, "9330445040"))
	natstest.Eventually(t, 5*time.Second, func() error {
		s, _, err := h.store.Get(context.Background(), id)
		if err != nil {
			return err
		}
		if s.Status != contracts.Done || s.Decision != contracts.Rejected || s.Reasons[0] != contracts.ReasonDeadline {
			return errors.New("not finished at the deadline yet")
		}
		return nil
	})
	res := h.do("GET", apiPaths[0]+"?search_id="+id, "", "")
	if res.body["status"] != "done" || res.body["decision"] != "rejected" {
		t.Fatalf("GET = %s", res.raw)
	}
	if !strings.Contains(h.logs.String(), contracts.ReasonDeadline) {
		t.Error("the deadline is not logged")
	}
}

// The gateway died after storing a search and before publishing it: the record exists but
// no message does. A restarted gateway's sweeper sends it.
func TestSweeperSendsARecordThatWasNeverPublished(t *testing.T) {
	cfg := testConfig()
	cfg.RepublishAfter = 100 * time.Millisecond
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	store, err := kvstore.Ensure(context.Background(), js, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	amount := money.Roubles(1000)
	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: id, PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7933***5040",
		ProductType: contracts.ProductLoan, Amount: &amount, RequestedAt: now, Deadline: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(context.Background(), contracts.NewSearch(*req, nil)); err != nil {
		t.Fatal(err)
	}
	startGatewayOn(t, cfg, srv, js)
	natstest.Eventually(t, 5*time.Second, func() error {
		if requestedCount(t, js, id) != 1 {
			return errors.New("not re-sent yet")
		}
		return nil
	})
}

// The broker restarts and loses its memory stream with the search's message in it; the
// sweeper sends the search again once the broker is back.
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
	h.srv.Restart()
	natstest.Eventually(t, 15*time.Second, func() error {
		if requestedCount(t, h.js, id) != 1 {
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
