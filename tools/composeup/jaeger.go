//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// httpClient bounds each call, so that a stuck server fails a step instead of hanging it.
var httpClient = &http.Client{Timeout: 15 * time.Second}

// traced sends one search with a trace context of its own and waits for Jaeger to hold the
// search's trace with spans of the gateway, scoring and offers. The gateway does not
// continue a caller's trace (services/gateway/edge.go): it starts its own, linked to the
// caller's, so the trace is found by that link.
func (s *stack) traced(ctx context.Context) error {
	caller := randomHex(16)
	body := fmt.Sprintf(`{"search_id":%q,"phone_number":"+79000000001","product_type":"loan","amount":300000,"term":24}`, uuid.NewString())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		fmt.Sprintf("http://127.0.0.1:%d/integrations/v1/api/loan_approval", s.ports.gateway), strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("traceparent", "00-"+caller+"-"+randomHex(8)+"-01")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), `"done"`) {
		return fmt.Errorf("the search was answered %d %s, want 200 and done", resp.StatusCode, answer)
	}
	want := []string{"gateway", "scoring", "offers"}
	var seen []string
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		found, services, err := s.findTrace(ctx, caller)
		if err == nil && found != "" {
			seen = services
			if missing := missingOf(want, services); len(missing) == 0 {
				fmt.Printf("composeup: trace %s in Jaeger, linked to the caller's, with spans of %s\n", found, strings.Join(services, ", "))
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-deadline:
			if seen == nil {
				return fmt.Errorf("no trace in Jaeger linked to the caller's %s within 60s (last error: %v)", caller, err)
			}
			return fmt.Errorf("the search's trace in Jaeger has spans of %v, missing %v, after 60s", seen, missingOf(want, seen))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// jaegerTraces is what findTrace reads of Jaeger's query API (/api/traces).
type jaegerTraces struct {
	Data []struct {
		TraceID   string       `json:"traceID"`
		Spans     []jaegerSpan `json:"spans"`
		Processes map[string]struct {
			ServiceName string `json:"serviceName"`
		} `json:"processes"`
	} `json:"data"`
}

type jaegerSpan struct {
	ProcessID  string `json:"processID"`
	References []struct {
		TraceID string `json:"traceID"` // a parent's or a link's
	} `json:"references"`
}

// findTrace looks among the gateway's recent traces for the one linked to the caller's
// trace, and returns its id and the services with spans in it.
func (s *stack) findTrace(ctx context.Context, caller string) (string, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://127.0.0.1:%d/api/traces?service=gateway&lookback=1h&limit=1000", s.ports.jaeger), nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("jaeger answered %s", resp.Status)
	}
	var t jaegerTraces
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return "", nil, err
	}
	id, services := linkedTrace(t, caller)
	return id, services, nil
}

// linkedTrace is the trace among t that links to the caller's trace, and the services with
// spans in it, sorted.
func linkedTrace(t jaegerTraces, caller string) (string, []string) {
	for _, tr := range t.Data {
		linked := false
		for _, sp := range tr.Spans {
			for _, r := range sp.References {
				// A parent's reference carries the trace's own id: only another trace's is a link.
				linked = linked || (r.TraceID == caller && caller != tr.TraceID)
			}
		}
		if !linked {
			continue
		}
		var services []string
		for _, sp := range tr.Spans {
			if name := tr.Processes[sp.ProcessID].ServiceName; !slices.Contains(services, name) {
				services = append(services, name)
			}
		}
		slices.Sort(services)
		return tr.TraceID, services
	}
	return "", nil
}

func missingOf(want, have []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			missing = append(missing, w)
		}
	}
	return missing
}
