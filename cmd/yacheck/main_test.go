//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/tools/topology"
)

// standalone is the standalone binary, built and started once for every test here, with a
// short deadline so that the deadline and asynchronous checks take seconds.
var standalone *topology.Service

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "yacheck-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bin, err := topology.Build(ctx, filepath.Join(dir, "bin"), "github.com/demobank/yacredits/cmd/standalone")
		if err != nil {
			panic(err)
		}
		standalone, err = topology.NewService(bin, dir, "standalone", "standalone", map[string]string{
			"DATA_DIR": filepath.Join(dir, "data"), "SYNC_BUDGET": "1s", "SEARCH_DEADLINE": "4s",
			"REPUBLISH_AFTER": "1s", "SWEEP_INTERVAL": "100ms",
		})
		if err != nil {
			panic(err)
		}
		if err := standalone.Start(); err != nil {
			panic(err)
		}
		defer standalone.Terminate(10 * time.Second)
		if err := topology.WaitFor(ctx, time.Minute, func() error { return standalone.Ready(ctx) }); err != nil {
			panic(err.Error() + "\n" + standalone.Tail(40))
		}
		return m.Run()
	}()
	os.Exit(code)
}

// yacheck runs the checker with args against base and returns whether it failed and what it
// printed.
func yacheck(t *testing.T, base string, args ...string) (bool, string) {
	t.Helper()
	o, err := parseFlags(append([]string{"-url", base, "-within", "8s", "-searches", "6"}, args...),
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	failed, err := run(context.Background(), o, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return failed, out.String()
}

// Pointed at the standalone binary, every check passes; the only one skipped is the
// credentials check, for a deployment run without credentials.
func TestStandalonePasses(t *testing.T) {
	dir := t.TempDir()
	jsonPath, junitPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.xml")
	failed, out := yacheck(t, standalone.URL(), "-json", jsonPath, "-junit", junitPath)
	if failed || strings.Contains(out, "FAIL ") {
		t.Fatalf("the standalone binary fails the contract:\n%s", out)
	}
	var rep struct {
		Results []result `json:"results"`
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	var skippedIDs []string
	for _, r := range rep.Results {
		if r.Outcome == skipped {
			skippedIDs = append(skippedIDs, r.ID)
		}
	}
	if len(rep.Results) != len(checks) || len(skippedIDs) != 1 || skippedIDs[0] != "auth.403-without-credentials" {
		t.Fatalf("%d results of %d checks, skipped %v:\n%s", len(rep.Results), len(checks), skippedIDs, out)
	}
	var junit junitSuites
	data, err = os.ReadFile(junitPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(data, &junit); err != nil {
		t.Fatal(err)
	}
	if s := junit.Suites[0]; s.Tests != len(checks) || s.Failures != 0 || s.Skipped != 1 || len(s.Cases) != len(checks) {
		t.Fatalf("junit suite = %+v", s)
	}
}

// breakage is a deployment that gets one rule of the contract wrong: the standalone binary
// behind a proxy that rewrites its answers.
type breakage struct {
	name   string
	run    string // the checks to run (-run)
	args   []string
	want   string // the check that must fail
	saying string // and what its report must say
	// rewrite changes an answer: its status, header and body.
	rewrite func(r *http.Request, status int, h http.Header, body []byte) (int, []byte)
	// before may answer instead of the standalone (true: answered).
	before func(w http.ResponseWriter, r *http.Request) bool
}

func (b breakage) proxy(t *testing.T) string {
	target, err := url.Parse(standalone.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(res *http.Response) error {
		if b.rewrite == nil {
			return nil
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		res.Body.Close()
		status, body := b.rewrite(res.Request, res.StatusCode, res.Header, body)
		res.StatusCode = status
		res.Body = io.NopCloser(bytes.NewReader(body))
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.before != nil && b.before(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func replace(old, new string) func(*http.Request, int, http.Header, []byte) (int, []byte) {
	return func(_ *http.Request, status int, _ http.Header, body []byte) (int, []byte) {
		return status, bytes.ReplaceAll(body, []byte(old), []byte(new))
	}
}

// Each check can fail: pointed at a deployment with one rule broken, the checker fails
// that check, names it, and says what the contract wants.
func TestEachBreakageIsCaught(t *testing.T) {
	for _, b := range []breakage{
		{name: "the link spelled as English would", run: `^done\.loan$`, want: "done.loan", saying: `spells it "propousal_link"`,
			rewrite: replace(`"propousal_link"`, `"proposal_link"`)},
		{name: "a rejection with data null", run: `^done\.rejected$`, want: "done.rejected", saying: "data: want an array",
			rewrite: replace(`"data":[]`, `"data":null`)},
		{name: "a card offer with a loan's payment", run: `^done\.credit_card$`, want: "done.credit_card", saying: "cc_rate",
			rewrite: replace(`"cc_rate":`, `"min":`)},
		{name: "offers not best first", run: `^done\.loan$`, want: "done.loan", saying: "not best first",
			rewrite: func(_ *http.Request, status int, _ http.Header, body []byte) (int, []byte) {
				var obj map[string]any
				if json.Unmarshal(body, &obj) != nil {
					return status, body
				}
				if data, ok := obj["data"].([]any); ok && len(data) > 1 {
					for i, j := 0, len(data)-1; i < j; i, j = i+1, j-1 {
						data[i], data[j] = data[j], data[i]
					}
					body, _ = json.Marshal(obj)
				}
				return status, body
			}},
		{name: "405 without Allow", run: `^paths\.other-methods$`, want: "paths.other-methods", saying: "want GET and POST",
			rewrite: func(_ *http.Request, status int, h http.Header, body []byte) (int, []byte) {
				h.Del("Allow")
				return status, body
			}},
		{name: "a 400 without details", run: `^error\.400-phone$`, want: "error.400-phone", saying: "details: a 400 carries",
			rewrite: func(_ *http.Request, status int, _ http.Header, body []byte) (int, []byte) {
				var obj map[string]any
				if status == 400 && json.Unmarshal(body, &obj) == nil {
					delete(obj, "details")
					body, _ = json.Marshal(obj)
				}
				return status, body
			}},
		{name: "a 400 naming the wrong field", run: `^error\.400-every-field-at-once$`, want: "error.400-every-field-at-once", saying: `want "amount" among them`,
			rewrite: replace(`"amount"`, `"sum"`)},
		{name: "a pending answer with a decision", run: `^async\.`, want: "async.pending-then-done", saying: "absent while pending",
			rewrite: replace(`"status":"pending"`, `"status":"pending","decision":"rejected"`)},
		{name: "no asynchronous answer", run: `^async\.`, want: "async.pending-then-done", saying: "want 200 pending",
			before: func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"search_id":"","message":"busy"}`)
				return true
			}},
		{name: "one of the three paths not served", run: `^paths\.post-and-poll$`, want: "paths.post-and-poll", saying: "/integrations/api/banking/loan_approval",
			before: func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/integrations/api/banking/loan_approval" {
					return false
				}
				http.NotFound(w, r)
				return true
			}},
		{name: "a big body answered 400", run: `^error\.413`, want: "error.413-too-large", saying: "want 413",
			rewrite: func(_ *http.Request, status int, _ http.Header, body []byte) (int, []byte) {
				if status == 413 {
					status = 400
				}
				return status, body
			}},
		{name: "a retry answered from a new search", run: `^retry\.same-state$`, want: "retry.same-state", saying: "differs",
			rewrite: func(r *http.Request, status int, _ http.Header, body []byte) (int, []byte) {
				if r.Method == http.MethodPost && r.URL.Path == paths[1] {
					body = bytes.Replace(body, []byte(`"decision":"has_approve"`), []byte(`"decision":"rejected"`), 1)
				}
				return status, body
			}},
		{name: "too slow", run: `^timing\.`, args: []string{"-post-p99", "150ms"}, want: "timing.latency", saying: "budgets: POST p99 150ms",
			before: func(w http.ResponseWriter, r *http.Request) bool {
				time.Sleep(200 * time.Millisecond) // the breakage is the delay itself
				return false
			}},
		{name: "credentials not required", run: `^auth\.`, args: []string{"-token", "a-token"}, want: "auth.403-without-credentials", saying: "want 403"},
	} {
		t.Run(b.name, func(t *testing.T) {
			failed, out := yacheck(t, b.proxy(t), append([]string{"-run", b.run}, b.args...)...)
			if !failed {
				t.Fatalf("the checker passed a broken deployment:\n%s", out)
			}
			var failing []string
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "FAIL" {
					failing = append(failing, f[1])
				}
			}
			if len(failing) != 1 || failing[0] != b.want {
				t.Fatalf("failed %v, want exactly %s:\n%s", failing, b.want, out)
			}
			if !strings.Contains(out, b.saying) {
				t.Fatalf("the report does not say %q:\n%s", b.saying, out)
			}
		})
	}
}

// Beyond loopback the standalone's test phones may be anybody's number: each must be named
// (or skipped with ”), so that a check never sends a real person's phone to a bank.
func TestDeployedURLNeedsItsTestPhones(t *testing.T) {
	none := func(string) string { return "" }
	phonesNamed := []string{"-phone-approved", "+79991110001", "-phone-rejected", "+79991110002", "-phone-delayed", "", "-phone-deadline", ""}
	for _, tc := range []struct {
		args []string
		want string // "" for accepted
	}{
		{[]string{"-url", "https://credits.bank.example"}, "-phone-approved: name the test phone"},
		{append([]string{"-url", "https://credits.bank.example"}, phonesNamed[:6]...), "-phone-deadline"},
		{append([]string{"-url", "https://credits.bank.example"}, phonesNamed...), ""},
		{[]string{"-url", "http://127.0.0.1:8080"}, ""},
		{[]string{"-url", "http://localhost:8080"}, ""},
		{[]string{"-url", "credits.bank.example"}, "want a base URL"},
	} {
		_, err := parseFlags(tc.args, none)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("parseFlags(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}
