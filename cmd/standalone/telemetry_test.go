package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// One search is one trace: the gateway's HTTP span at the root, then the request's publish,
// scoring's processing and publish, offers' processing and its write, every span's parent in
// the same trace, each service under its own name. No span attribute and no log line holds
// the raw phone number or the client's decision, and every log line about the search carries
// the trace's id.
func TestOneTracePerSearch(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	newTracer := func(_ context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(telemetry.Resource(service)))
		return tp, tp.Shutdown, nil
	}
	natsAddr := natstest.FreeAddr(t)
	sys := startTraced(t, t.TempDir(), map[string]string{"NATS_LISTEN": natsAddr}, newTracer)
	id := uuid.NewString()
	if status, body := sys.call(t, "POST", path, request(id, "8 (933) 044-50-40", "loan")); status != 200 || body["status"] != "done" {
		t.Fatalf("POST = %d %v", status, body)
	}
	finishAtDeadline(t, natsAddr)
	checkMetrics(t, sys.url+"/metrics")
	sys.stop() // flushes every span

	spans := rec.Ended()
	var traceID trace.TraceID
	for _, s := range spans {
		if hasAttr(s.Attributes(), "search_id", id) {
			traceID = s.SpanContext().TraceID()
			break
		}
	}
	if !traceID.IsValid() {
		t.Fatalf("no span names search %s", id)
	}
	inTrace := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	services := map[string]int{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == traceID {
			inTrace[s.SpanContext().SpanID()] = s
			services[serviceName(s)]++
		} else if hasAttr(s.Attributes(), "search_id", id) {
			t.Errorf("span %q of the search is in another trace", s.Name())
		}
	}
	for _, svc := range []string{"gateway", "scoring", "offers"} {
		if services[svc] == 0 {
			t.Errorf("no %s span in the search's trace (services: %v)", svc, services)
		}
	}
	roots := 0
	for _, s := range inTrace {
		if !s.Parent().IsValid() {
			roots++
			if serviceName(s) != "gateway" || s.SpanKind() != trace.SpanKindServer {
				t.Errorf("root span %q (%s, %s) is not the gateway's HTTP span", s.Name(), serviceName(s), s.SpanKind())
			}
			continue
		}
		if _, ok := inTrace[s.Parent().SpanID()]; !ok {
			t.Errorf("span %q has a parent outside the trace", s.Name())
		}
	}
	if roots != 1 {
		t.Errorf("%d root spans, want 1", roots)
	}
	for _, want := range []string{"loan.v1.requested publish", "loan.v1.requested process", "loan.v1.scored publish", "loan.v1.scored process"} {
		if !hasSpan(inTrace, want) {
			t.Errorf("no %q span in the trace", want)
		}
	}

	for _, s := range spans {
		for _, a := range s.Attributes() {
			if leaksPhone(a.Value.Emit()) {
				t.Errorf("span %q attribute %s holds a raw phone", s.Name(), a.Key)
			}
			if leaksDecision(string(a.Key), a.Value.Emit()) {
				t.Errorf("span %q attribute %s=%s tells the client's decision", s.Name(), a.Key, a.Value.Emit())
			}
		}
		for _, e := range s.Events() {
			for _, a := range e.Attributes {
				if leaksPhone(a.Value.Emit()) {
					t.Errorf("span %q event %q holds a raw phone", s.Name(), e.Name)
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(sys.Logs(), "\n") {
		if leaksPhone(line) {
			t.Errorf("log line holds a raw phone: %s", line)
		}
		for _, word := range decisionWords {
			if strings.Contains(line, `"`+word+`"`) {
				t.Errorf("log line tells the client's decision (%s): %s", word, line)
			}
		}
		var entry struct {
			SearchID string `json:"search_id"`
			TraceID  string `json:"trace_id"`
			SpanID   string `json:"span_id"`
			Message  string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.SearchID != id {
			continue
		}
		seen[entry.Message] = true
		if entry.TraceID != traceID.String() || entry.SpanID == "" {
			t.Errorf("log line about the search without its trace: %s", line)
		}
	}
	// The HTTP request, and the search's ending (written where it ends, by offers).
	if !seen["http request"] || !seen["search done"] {
		t.Errorf("log lines about the search: %v, want the request and its ending", seen)
	}
}

// decisionWords are the values a client's decision is written in: the answer's decision,
// an offer's, scoring's verdict.
var decisionWords = []string{string(contracts.HasApprove), string(contracts.Rejected), string(contracts.PreApproved),
	string(contracts.FullApproved), string(contracts.Approved), string(contracts.Declined)}

// leaksDecision tells whether a span attribute tells a client's decision: by its value, or,
// for what has no telling value (a grade "A", a count of offers, a reason), by its name.
func leaksDecision(key, value string) bool {
	for _, word := range decisionWords {
		if value == word || strings.Contains(value, `"`+word+`"`) {
			return true
		}
	}
	for _, name := range []string{"decision", "verdict", "grade", "reason", "preapproval", "offers.count", "limit"} {
		if strings.Contains(key, name) {
			return true
		}
	}
	return false
}

func leaksPhone(s string) bool {
	return strings.Contains(s, "9330445040") || strings.Contains(s, "044-50-40") || strings.Contains(s, "0445040")
}

func hasAttr(attrs []attribute.KeyValue, key, value string) bool {
	for _, a := range attrs {
		if string(a.Key) == key && a.Value.AsString() == value {
			return true
		}
	}
	return false
}

func hasSpan(spans map[trace.SpanID]sdktrace.ReadOnlySpan, name string) bool {
	for _, s := range spans {
		if s.Name() == name {
			return true
		}
	}
	return false
}

func serviceName(s sdktrace.ReadOnlySpan) string {
	v, _ := s.Resource().Set().Value("service.name")
	return v.AsString()
}

// finishAtDeadline leaves a pending search long past its deadline in the bucket, as a
// gateway that died with it would, and waits until the sweeper has finished it: the ending
// the deadline metrics count.
func finishAtDeadline(t *testing.T, natsAddr string) {
	t.Helper()
	_, js := natstest.JetStream(t, "nats://"+natsAddr)
	ctx := natstest.Context(t, 20*time.Second)
	store, err := search.Open(ctx, js, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	then := time.Now().Add(-time.Hour).UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{SearchID: uuid.NewString(),
		PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7999***0000", ProductType: contracts.ProductLoan,
		RequestedAt: then, Deadline: then.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreatePending(ctx, contracts.NewSearch(*req, "")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, func() error {
		s, _, err := store.Get(ctx, req.SearchID)
		if err != nil {
			return err
		}
		if s.Status() != contracts.Done || s.Reasons[0] != contracts.ReasonDeadline {
			return fmt.Errorf("not finished at its deadline yet: %+v", s)
		}
		return nil
	})
}

// checkMetrics scrapes /metrics after a search and a search ended by its deadline, and
// checks that every series the Grafana dashboard queries is served, but for counters that
// appear only once their event has happened (a redelivery, a dead letter).
func checkMetrics(t *testing.T, url string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	served := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(strings.Fields(line)[0], "{") // with labels, or a series without
		served[name] = true
	}
	if !strings.Contains(string(body), `http_route="/integrations/v1/api/loan_approval"`) {
		t.Errorf("request metrics are not labelled by route")
	}
	if !strings.Contains(string(body), `credits_searches_total{decision="has_approve"`) {
		t.Errorf("the approved search is not counted")
	}
	dashboard, err := os.ReadFile("../../deploy/grafana/credits-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	onlyAfterAnEvent := map[string]bool{
		"credits_consumer_redeliveries_total": true,
		"credits_consumer_dead_letters_total": true,
		"credits_conversions_delivered_total": true,
		"credits_conversions_refused_total":   true,
		"credits_searches_shed_total":         true,
	}
	names := regexp.MustCompile(`\b(?:http_server|credits)_[a-z_]+`).FindAllString(string(dashboard)+string(alerts), -1)
	if len(names) < 8 {
		t.Fatalf("the dashboard names only %v", names)
	}
	for _, name := range names {
		if !served[name] && !onlyAfterAnEvent[name] {
			t.Errorf("the dashboard or an alert queries %s, which /metrics does not serve", name)
		}
	}
}
