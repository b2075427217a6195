package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzAPI sends arbitrary requests through the real router, to a gateway on a real
// JetStream server, and holds every answer to the contract: never a 5xx, always a JSON
// object, an error with its message (a 400 with properties and details as well, a 405 with
// Allow), a 200 done or pending for its search. The corpus is testdata/fuzz/FuzzAPI; .ci/run
// fuzzes it for a few seconds, `go test` replays it.
func FuzzAPI(f *testing.F) {
	paths := []string{"/integrations/v1/api/loan_approval", "/api/banking/loan_approval", "/integrations/api/banking/loan_approval"}
	methods := []string{"POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
	// A test phone's number (pkg/testphones' demo range), not a client's: the corpus keeps it.
	valid := loanBody("e2b4948b-7d8a-4eec-875c-b1c11d7d8372", "9000000001")
	f.Add(uint8(0), uint8(0), "", "application/json", valid, "")
	f.Add(uint8(0), uint8(1), "", "application/json; charset=utf-8", strings.Replace(valid, "loan", "credit_card", 1), "")
	f.Add(uint8(1), uint8(2), "?search_id=e2b4948b-7d8a-4eec-875c-b1c11d7d8372", "", "", "")
	f.Add(uint8(1), uint8(0), "?search_id=nope&search_id=", "", "", "")
	f.Add(uint8(1), uint8(0), "", "application/json", `{"search_id":"e2b4948b-7d8a-4eec-875c-b1c11d7d8372"}`, "")
	f.Add(uint8(0), uint8(0), "", "text/plain", valid, "")
	f.Add(uint8(0), uint8(0), "", "application/json", `{"search_id":1,"search_id":2}`, "")
	f.Add(uint8(0), uint8(0), "", "application/json", `{"props":[null,"a",{}],"amount":"1e400"}`, "")
	f.Add(uint8(0), uint8(0), "", "application/json", "{\"phone_number\":\"\xff\"}", "")
	f.Add(uint8(2), uint8(0), "", "", "", "")
	f.Add(uint8(0), uint8(0), "/../x", "application/json", valid, "X-Forwarded-For: 10.0.0.1")
	f.Add(uint8(0), uint8(0), "", "application/json", valid, "Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	// Nothing here finishes a search (no scoring, no offers): a POST answers pending after
	// the budget, which is short so that each input costs little.
	cfg := testConfig()
	cfg.SyncBudget = 10 * time.Millisecond
	h := startGateway(f, cfg)
	client := &http.Client{Timeout: 20 * time.Second}
	f.Fuzz(func(t *testing.T, method, path uint8, suffix, contentType, body, header string) {
		m := methods[int(method)%len(methods)]
		req, err := http.NewRequest(m, h.url+paths[int(path)%len(paths)]+suffix, strings.NewReader(body))
		if err != nil || strings.ContainsFunc(req.URL.RequestURI(), func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			// Not a request a client could send: a request-target holds no whitespace or
			// control character (RFC 9112), and net/http answers such a request line with its
			// own plain-text 400 before any handler runs.
			return
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if name, value, ok := strings.Cut(header, ": "); ok && name != "" {
			req.Header.Set(name, value)
		}
		res, err := client.Do(req)
		if err != nil {
			if strings.Contains(err.Error(), "invalid header") || strings.Contains(err.Error(), "invalid method") {
				return // refused by the client library before it was sent
			}
			t.Fatalf("%s %s: %v", m, req.URL, err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", m, req.URL, body, res.StatusCode, raw)
		}
		if m == "HEAD" || res.StatusCode == http.StatusNotFound && !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			return // no body to judge; a path outside the API is chi's 404
		}
		var answer map[string]any
		if err := json.Unmarshal(raw, &answer); err != nil {
			t.Fatalf("%s %s: %d, body not a JSON object: %q", m, req.URL, res.StatusCode, raw)
		}
		switch code := res.StatusCode; {
		case code == http.StatusOK:
			if s := answer["status"]; s != "done" && s != "pending" || answer["search_id"] == "" {
				t.Fatalf("200 without a search's state: %s", raw)
			}
		case code >= 400:
			if msg, _ := answer["message"].(string); msg == "" {
				t.Fatalf("%d without a message: %s", code, raw)
			}
			if code == http.StatusBadRequest {
				props, _ := answer["properties"].([]any)
				details, _ := answer["details"].([]any)
				if len(props) == 0 || len(details) == 0 {
					t.Fatalf("400 without properties and details: %s", raw)
				}
			}
			if code == http.StatusMethodNotAllowed && res.Header.Get("Allow") == "" {
				t.Fatalf("405 without Allow")
			}
		default:
			t.Fatalf("unexpected status %d: %s", code, raw)
		}
	})
}
