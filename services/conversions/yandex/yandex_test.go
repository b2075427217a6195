package yandex

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

func conversion() contracts.Conversion {
	term := 24
	return contracts.Conversion{ID: "e2b4948b-7d8a-4eec-875c-b1c11d7d8372.cash-standard", SearchID: "e2b4948b-7d8a-4eec-875c-b1c11d7d8372",
		Offer: "cash-standard", ProductType: contracts.ProductLoan, ContractDate: "2026-12-02",
		Amount: money.Roubles(300_000) + 50, Term: &term, AdditionalServices: true, State: contracts.ConversionQueued}
}

func TestSendShape(t *testing.T) {
	var got map[string]any
	var auth, ctype string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, ctype = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL, Token: "s3cret", PartnerID: 1001, HTTP: srv.Client()}
	if err := c.Send(context.Background(), []contracts.Conversion{conversion()}); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer s3cret" || ctype != "application/json" {
		t.Errorf("headers: Authorization %q, Content-Type %q", auth, ctype)
	}
	// Spec §9: {"partner_id": <integer>, "data": [{offer_id, request_id, amount,
	// additional_services}]}, and nothing else.
	items, _ := got["data"].([]any)
	if got["partner_id"] != 1001.0 || len(items) != 1 || len(got) != 2 {
		t.Fatalf("body %v", got)
	}
	item := items[0].(map[string]any)
	want := map[string]any{"request_id": "e2b4948b-7d8a-4eec-875c-b1c11d7d8372", "offer_id": "cash-standard",
		"amount": 300000.5, "additional_services": true}
	for k, v := range want {
		if item[k] != v {
			t.Errorf("item[%s] = %v, want %v", k, item[k], v)
		}
	}
	if len(item) != len(want) {
		t.Errorf("the item carries more than §9's fields: %v", item)
	}
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    string
		body      string
		slow      bool
		permanent bool
		after     time.Duration
	}{
		{name: "accepted", status: 200},
		{name: "accepted, 202", status: 202},
		{name: "server error", status: 500, body: "oops"},
		{name: "unavailable with a wait", status: 503, header: "7", after: 7 * time.Second},
		{name: "too many requests", status: 429, header: "3", after: 3 * time.Second},
		{name: "too many requests, absurd wait", status: 429, header: "999999", after: MaxRetryAfter},
		{name: "our token is wrong: an operator's fix, not the items' fault", status: 401},
		{name: "bad request", status: 400, body: `{"error":"unknown request_id"}`, permanent: true},
		{name: "unprocessable", status: 422, body: "no", permanent: true},
		{name: "slow", slow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.slow {
					<-release // answers only after the client gave up
					return
				}
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			defer close(release) // before Close, which waits for the handler
			hc := srv.Client()
			hc.Timeout = 100 * time.Millisecond
			err := (&Client{URL: srv.URL, Token: "t", PartnerID: 7, HTTP: hc}).Send(context.Background(), []contracts.Conversion{conversion()})
			var retry *RetryableError
			var refused *PermanentError
			switch {
			case tt.status >= 200 && tt.status < 300:
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
			case tt.permanent:
				if !errors.As(err, &refused) || refused.Status != tt.status || refused.Answer != tt.body {
					t.Fatalf("Send = %v, want a permanent %d with the answer %q", err, tt.status, tt.body)
				}
			default:
				if !errors.As(err, &retry) || retry.After != tt.after || retry.Status != tt.status {
					t.Fatalf("Send = %#v, want retryable %d after %s", err, tt.status, tt.after)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"120", 2 * time.Minute}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
	} {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAnswerIsCut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(strings.Repeat("x", 10*MaxAnswer)))
	}))
	defer srv.Close()
	err := (&Client{URL: srv.URL, HTTP: srv.Client()}).Send(context.Background(), []contracts.Conversion{conversion()})
	var refused *PermanentError
	if !errors.As(err, &refused) || len(refused.Answer) != MaxAnswer {
		t.Fatalf("Send = %v, want the answer cut to %d bytes", err, MaxAnswer)
	}
}
