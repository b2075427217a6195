package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/logtest"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// The client-IP header is believed only from our own proxies, read from its right end.
func TestClientIPTrustsOnlyOurProxies(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8", "fd00::/8")
	tests := []struct {
		name, peer string
		header     []string
		want       string
	}{
		{"a direct caller's header is its own word", "203.0.113.7:4000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"our proxy's last entry is the caller", "10.0.0.2:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"a spoofed entry left of ours is skipped", "10.0.0.2:4000", []string{"192.0.2.66, 198.51.100.1"}, "198.51.100.1"},
		{"chained proxies are skipped", "10.0.0.2:4000", []string{"198.51.100.1, 10.0.0.9"}, "198.51.100.1"},
		{"several header lines read as one list", "10.0.0.2:4000", []string{"192.0.2.66", "198.51.100.1, 10.1.1.1"}, "198.51.100.1"},
		{"an IPv4-mapped peer is one of ours", "[::ffff:10.0.0.2]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"an IPv4-mapped entry is unmapped", "10.0.0.2:4000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"an IPv6 proxy", "[fd00::1]:4000", []string{"2001:db8::5"}, "2001:db8::5"},
		{"garbage from our proxy: the peer", "10.0.0.2:4000", []string{"198.51.100.1, not-an-ip"}, "10.0.0.2"},
		{"only proxies: the peer", "10.0.0.2:4000", []string{"10.0.0.3"}, "10.0.0.2"},
		{"no header: the peer", "10.0.0.2:4000", nil, "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.header {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(r, "X-Forwarded-For", trusted); got != netip.MustParseAddr(tt.want) {
				t.Fatalf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

// A caller outside the allow-list that writes an allowed address into X-Forwarded-For is
// still refused: its connection does not come from our proxy (before TRUSTED_PROXIES it
// got 200).
func TestAllowListCannotBeSpoofed(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.Auth.AllowedNetworks = mustPrefixes(t, "203.0.113.0/24")
	cfg.Auth.ClientIPHeader, cfg.Auth.TrustedProxies = "X-Forwarded-For", mustPrefixes(t, "10.0.0.0/8")
	h := startGateway(t, cfg)
	req, _ := http.NewRequest("GET", h.url+apiPaths[0]+"?search_id="+uuid.NewString(), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.10")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Fatalf("a spoofed X-Forwarded-For got %d, want 403", res.StatusCode)
	}
}

// Thousands of requests with caller-chosen Host headers and paths leave the request metrics
// as few series as before them: labels are method, route and status only (5,000 distinct
// hosts once made 88,420 series).
func TestMetricsStayBounded(t *testing.T) {
	mp, metrics, err := telemetry.NewMeterProvider("gateway")
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	cfg := testConfig()
	cfg.SyncBudget = 0
	h := &harness{t: t, logs: &logtest.Buffer{}}
	startWith(t, h, cfg, Deps{JS: js, Log: zerolog.Nop(), Meter: mp, Metrics: metrics})
	series := func() int {
		res, err := http.Get(h.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		n := 0
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "http_server_request_duration_seconds_count") {
				n++
			}
		}
		return n
	}
	warm := func(i int) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/nope/%d", h.url, i), nil)
		req.Host = fmt.Sprintf("host-%d.example", i)
		req.Header.Set("User-Agent", fmt.Sprintf("agent-%d", i))
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
		req, _ = http.NewRequest("GET", h.url+apiPaths[i%3]+"?search_id="+uuid.NewString(), nil)
		req.Host = fmt.Sprintf("other-%d.example", i)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}
	for i := range 20 {
		warm(i)
	}
	before := series()
	for i := 20; i < 3000; i++ {
		warm(i)
	}
	if after := series(); after != before || after > 10 {
		t.Fatalf("request series: %d before, %d after 5,960 requests with distinct hosts and paths", before, after)
	}
}

// RATE_LIMIT is one bucket for the whole API, whatever the path and method (it was one per
// route: six times the limit).
func TestOneRateLimitForTheWholeAPI(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 0
	cfg.RateLimit, cfg.RateBurst = 0.5, 3
	h := startGateway(t, cfg)
	calls := []struct{ method, path string }{
		{"GET", apiPaths[0]}, {"GET", apiPaths[1]}, {"POST", apiPaths[2]}, {"GET", apiPaths[2]},
	}
	var statuses []int
	var last response
	for _, c := range calls {
		body := ""
		if c.method == "POST" {
			body = loanBody(uuid.NewString(), "9330445040")
		}
		path := c.path
		if c.method == "GET" {
			path += "?search_id=" + uuid.NewString()
		}
		last = h.do(c.method, path, "", body)
		statuses = append(statuses, last.status)
	}
	if statuses[0] == 429 || statuses[1] == 429 || statuses[2] == 429 || statuses[3] != 429 {
		t.Fatalf("statuses = %v, want three answered and the fourth 429", statuses)
	}
	if ra := last.header.Get("Retry-After"); ra != "2" && ra != "1" {
		t.Errorf("Retry-After = %q, want the seconds until the next token", ra)
	}
}

// A body cut short, or sent too slowly, is the client's fault: 400 or 408 in the documented
// shape, never 500 (200 slow uploads made 200 × 500).
func TestClientFaultsAre4xx(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = 500 * time.Millisecond
	h := startGateway(t, cfg)
	addr := strings.TrimPrefix(h.url, "http://")
	send := func(t *testing.T, head string, body string, closeWrite bool) (int, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "%s", head)
		io.WriteString(c, body)
		if closeWrite {
			c.(*net.TCPConn).CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(raw)
	}
	head := func(length int) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", apiPaths[0], length)
	}
	t.Run("shorter than its length", func(t *testing.T) {
		status, body := send(t, head(500), `{"search_id":`, true)
		if status != 400 || !strings.Contains(body, `"properties":["body"]`) {
			t.Fatalf("%d %s, want 400 naming the body", status, body)
		}
	})
	t.Run("too slow", func(t *testing.T) {
		status, body := send(t, head(500), `{"search_id":`, false)
		if status != 408 || !strings.Contains(body, `"message"`) {
			t.Fatalf("%d %s, want 408", status, body)
		}
	})
	if strings.Contains(h.logs.String(), `"level":"error"`) {
		t.Errorf("a client's fault was logged as an error:\n%s", h.logs)
	}
}

// The edge starts its own trace and links the caller's: a caller can neither force sampling
// nor plant baggage. A caller from TRACE_TRUSTED_NETWORKS continues its own trace.
func TestInboundTraceContextIsNotObeyed(t *testing.T) {
	caller := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled})
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			// Sample nothing of our own: a span recorded here was sampled on the caller's say-so.
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())), sdktrace.WithSpanProcessor(rec))
			srv := natstest.RunServer(t)
			_, js := natstest.JetStream(t, srv.ClientURL())
			cfg := testConfig()
			cfg.SyncBudget = 0
			if trusted {
				cfg.TraceTrusted = mustPrefixes(t, "127.0.0.0/8")
			}
			h := &harness{t: t, logs: &logtest.Buffer{}}
			startWith(t, h, cfg, Deps{JS: js, Log: zerolog.Nop(), Tracer: tp})
			req, _ := http.NewRequest("GET", h.url+apiPaths[0]+"?search_id="+uuid.NewString(), nil)
			propagation.TraceContext{}.Inject(trace.ContextWithRemoteSpanContext(context.Background(), caller), propagation.HeaderCarrier(req.Header))
			req.Header.Set("Baggage", "planted=yes")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			spans := rec.Ended()
			if !trusted {
				if len(spans) != 0 {
					t.Fatalf("the caller's sampled flag forced %d spans to be recorded", len(spans))
				}
				return
			}
			if len(spans) == 0 || spans[0].SpanContext().TraceID() != caller.TraceID() {
				t.Fatalf("a trusted caller's trace was not continued: %v", spans)
			}
		})
	}
}

// A new root links the caller's span, so the two traces can still be found from each other.
func TestInboundTraceIsLinked(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	cfg := testConfig()
	cfg.SyncBudget = 0
	h := &harness{t: t, logs: &logtest.Buffer{}}
	startWith(t, h, cfg, Deps{JS: js, Log: zerolog.Nop(), Tracer: tp})
	caller := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	req, _ := http.NewRequest("GET", h.url+apiPaths[0]+"?search_id="+uuid.NewString(), nil)
	propagation.TraceContext{}.Inject(trace.ContextWithRemoteSpanContext(context.Background(), caller), propagation.HeaderCarrier(req.Header))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindServer {
			continue
		}
		if s.SpanContext().TraceID() == caller.TraceID() || len(s.Links()) != 1 || s.Links()[0].SpanContext.TraceID() != caller.TraceID() {
			t.Fatalf("server span %s in trace %s, links %v: want a trace of its own linking the caller's", s.Name(), s.SpanContext().TraceID(), s.Links())
		}
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.Emit(), "127.0.0.1:") && a.Key != "client.address" {
				t.Errorf("span attribute %s = %s holds the caller's Host", a.Key, a.Value.Emit())
			}
		}
		return
	}
	t.Fatal("no server span")
}

// Outside loopback the gateway refuses to start without credentials or with a key anybody
// can know; on loopback the demo setup still runs.
func TestSecureDefaults(t *testing.T) {
	strong := "c5b11e82ed8cd340b41b186c62e4917e03ceed0823e662c2c063a8a80776404a"
	token := "d8a1f3b20c6e4f59a7d2b8e1c03f6a945e7b2d1c8f0a3e6b9d4c7f2a5e8b1d0c"
	tests := []struct {
		name string
		env  map[string]string
		bad  string // the variable named in the error; empty: accepted
	}{
		{"loopback, no credentials", map[string]string{"HTTP_ADDR": "127.0.0.1:8080", "PHONE_HASH_KEY": strong}, ""},
		{"public, no credentials", map[string]string{"HTTP_ADDR": "0.0.0.0:8080", "PHONE_HASH_KEY": strong}, "AUTH_TOKENS"},
		{"public, AUTH_DISABLED", map[string]string{"HTTP_ADDR": ":8080", "PHONE_HASH_KEY": strong, "AUTH_DISABLED": "true"}, ""},
		{"public, a token", map[string]string{"HTTP_ADDR": ":8080", "PHONE_HASH_KEY": strong, "AUTH_TOKENS": token}, ""},
		{"public, a guessable token beside a good one", map[string]string{"HTTP_ADDR": ":8080", "PHONE_HASH_KEY": strong, "AUTH_TOKENS": token + ",letmein"}, "AUTH_TOKENS"},
		{"public, the dev overlay's token", map[string]string{"HTTP_ADDR": ":8080", "PHONE_HASH_KEY": strong, "AUTH_TOKENS": "dev-only-token"}, "AUTH_TOKENS"},
		{"public, a weak client secret", map[string]string{"HTTP_ADDR": ":8080", "PHONE_HASH_KEY": strong, "AUTH_CLIENT_ID": "yandex", "AUTH_CLIENT_SECRET": "password1"}, "AUTH_CLIENT_SECRET"},
		{"public, a key of 16 bytes in 32 hex digits", map[string]string{"HTTP_ADDR": ":8080", "AUTH_TOKENS": token, "PHONE_HASH_KEY": "0123456789abcdef0123456789abcdef"}, "PHONE_HASH_KEY"},
		{"API on loopback, health beyond it: the demo key", map[string]string{"HTTP_ADDR": "127.0.0.1:8080", "HEALTH_ADDR": "0.0.0.0:8081", "PHONE_HASH_KEY": "standalone-demo-key-not-a-secret-0123456789"}, "PHONE_HASH_KEY"},
		{"loopback, a guessable token", map[string]string{"HTTP_ADDR": "127.0.0.1:8080", "PHONE_HASH_KEY": strong, "AUTH_TOKENS": "t"}, ""},
		{"public, the dev key", map[string]string{"HTTP_ADDR": ":8080", "AUTH_TOKENS": "t", "PHONE_HASH_KEY": "dev-only-phone-hash-key-not-a-secret-0123456789"}, "PHONE_HASH_KEY"},
		{"public, the compose key", map[string]string{"HTTP_ADDR": ":8080", "AUTH_TOKENS": "t", "PHONE_HASH_KEY": "compose-only-phone-hash-key-not-a-secret-0123456789"}, "PHONE_HASH_KEY"},
		{"public, a key of one letter", map[string]string{"HTTP_ADDR": ":8080", "AUTH_TOKENS": "t", "PHONE_HASH_KEY": strings.Repeat("a", 64)}, "PHONE_HASH_KEY"},
		{"loopback, the demo key", map[string]string{"HTTP_ADDR": "127.0.0.1:8080", "PHONE_HASH_KEY": "standalone-demo-key-not-a-secret-0123456789"}, ""},
		{"a client-IP header without trusted proxies", map[string]string{"PHONE_HASH_KEY": strong, "CLIENT_IP_HEADER": "X-Forwarded-For"}, "CLIENT_IP_HEADER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(func(k string) string { return tt.env[k] })
			switch {
			case tt.bad == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
				t.Fatalf("error %v, want one naming %s", err, tt.bad)
			}
		})
	}
}

// A gateway beyond loopback says at every start what it leaves open: no authentication
// (AUTH_DISABLED), no allow-list, no rate limit, readiness and metrics on the public port.
// On loopback it says nothing of the kind.
func TestOpenSettingsAreSaidAtStart(t *testing.T) {
	warnings := []string{"AUTH_DISABLED=true", "ALLOWED_NETWORKS is empty", "RATE_LIMIT is 0", "HEALTH_ADDR is empty"}
	public, err := LoadConfig(func(k string) string {
		return map[string]string{"HTTP_ADDR": "0.0.0.0:0", "AUTH_DISABLED": "true",
			"PHONE_HASH_KEY": "c5b11e82ed8cd340b41b186c62e4917e03ceed0823e662c2c063a8a80776404a"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		want bool
	}{{"public", public, true}, {"loopback", testConfig(), false}} {
		t.Run(tt.name, func(t *testing.T) {
			h := startGateway(t, tt.cfg)
			h.stop()
			for _, w := range warnings {
				found := false
				for _, line := range strings.Split(h.logs.String(), "\n") {
					if strings.Contains(line, w) && strings.Contains(line, `"level":"warn"`) {
						found = true
					}
				}
				if found != tt.want {
					t.Errorf("warning %q logged: %v, want %v\n%s", w, found, tt.want, h.logs.String())
				}
			}
		})
	}
}
