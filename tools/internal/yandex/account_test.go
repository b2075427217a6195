package yandex

import (
	"strings"
	"testing"
	"time"
)

// answer builds an exchange at t0+at that took took.
func answer(method string, at, took time.Duration, status int, state, decision, outcome string) Answer {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return Answer{Method: method, Sent: t0.Add(at), Received: t0.Add(at + took), Status: status,
		State: state, Decision: decision, Outcome: outcome}
}

func TestAccount(t *testing.T) {
	ms := time.Millisecond
	post := func(at time.Duration, status int, state, decision, outcome string) Answer {
		return answer("POST", at, 5*ms, status, state, decision, outcome)
	}
	get := func(at time.Duration, status int, state, decision, outcome string) Answer {
		return answer("GET", at, 5*ms, status, state, decision, outcome)
	}
	tests := []struct {
		name    string
		search  Search
		check   func(Report) bool
		failing bool
	}{
		{"done in the first POST", Search{Request{PreApproved: true}, []Answer{post(0, 200, "done", "has_approve", "a")}},
			func(r Report) bool { return r.Accepted == 1 && r.Done == 1 && r.DoneInFirstPOST == 1 }, false},
		{"503, then accepted, polled to done", Search{Request{}, []Answer{post(0, 503, "", "", ""),
			post(time.Second, 200, "pending", "", ""), get(2*time.Second, 200, "done", "rejected", "r")}},
			func(r Report) bool {
				return r.Unavailable == 1 && r.Done == 1 && r.TimeToDone.P50 == 2*time.Second+5*ms
			}, false},
		{"never accepted is not lost", Search{Request{}, []Answer{post(0, 503, "", "", ""), post(time.Second, 0, "", "", "")}},
			func(r Report) bool { return r.NeverAccepted == 1 && r.Lost == 0 }, false},
		{"accepted, then 404: lost", Search{Request{}, []Answer{post(0, 200, "pending", "", ""), get(time.Second, 404, "", "", "")}},
			func(r Report) bool { return r.Lost == 1 }, true},
		{"accepted, never done: lost", Search{Request{}, []Answer{post(0, 200, "pending", "", ""), get(time.Second, 200, "pending", "", "")}},
			func(r Report) bool { return r.Lost == 1 }, true},
		{"two different done answers: doubled", Search{Request{}, []Answer{post(0, 200, "done", "has_approve", "a"),
			get(time.Second, 200, "done", "has_approve", "b")}},
			func(r Report) bool { return r.Doubled == 1 }, true},
		{"pending after done: doubled", Search{Request{}, []Answer{post(0, 200, "done", "rejected", "r"),
			get(time.Second, 200, "pending", "", "")}},
			func(r Report) bool { return r.Doubled == 1 }, true},
		{"a 500: unexpected", Search{Request{}, []Answer{post(0, 500, "", "", ""), post(time.Second, 200, "done", "rejected", "r")}},
			func(r Report) bool { return r.Unexpected == 1 }, true},
		{"slower than allowed: unexpected", Search{Request{}, []Answer{answer("POST", 0, 11*time.Second, 200, "done", "rejected", "r")}},
			func(r Report) bool { return r.Unexpected == 1 }, true},
		{"outside the shape: unexpected", Search{Request{}, []Answer{func() Answer {
			a := post(0, 200, "done", "rejected", "r")
			a.Shape = "extra field"
			return a
		}()}}, func(r Report) bool { return r.Unexpected == 1 }, true},
		{"a pre-approved client rejected", Search{Request{PreApproved: true}, []Answer{post(0, 200, "done", "rejected", "r")}},
			func(r Report) bool { return r.RejectedByFault == 1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.search
			s.SearchID = "x"
			r := Account([]*Search{&s}, 10*time.Second)
			if !tt.check(r) || r.Failed() != tt.failing {
				t.Fatalf("report %+v (failed %v, want %v)", r, r.Failed(), tt.failing)
			}
		})
	}
}

// Concurrent first POSTs of one id are judged as one search: the same done answer twice is
// fine, a pending answer to a POST sent before the other was done is too.
func TestAccountMergesOneID(t *testing.T) {
	a := &Search{Request{SearchID: "x"}, []Answer{answer("POST", 0, 50*time.Millisecond, 200, "done", "rejected", "r")}}
	b := &Search{Request{SearchID: "x"}, []Answer{answer("POST", 10*time.Millisecond, 60*time.Millisecond, 200, "pending", "", ""),
		answer("GET", time.Second, time.Millisecond, 200, "done", "rejected", "r")}}
	if r := Account([]*Search{a, b}, 10*time.Second); r.Searches != 1 || r.Failed() {
		t.Fatalf("report %+v", r)
	}
}

func TestParseChecksTheShape(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string // part of the error; empty: valid
	}{
		{200, `{"search_id":"x","status":"pending"}`, ""},
		{200, `{"search_id":"x","status":"pending","decision":"rejected"}`, `"decision"`},
		{200, `{"search_id":"x","status":"done","name":"Bank","decision":"rejected","data":[]}`, ""},
		{200, `{"search_id":"x","status":"done","name":"Bank","decision":"rejected","data":null}`, "data array"},
		{200, `{"search_id":"x","status":"done","name":"Bank","decision":"has_approve","data":[]}`, "without offers"},
		{200, `{"search_id":"x","status":"done","name":"Bank","decision":"has_approve","data":[{"product_type":"loan","decision":"pre_approved",` +
			`"amount":{"min":1,"max":2},"term":{"min":1,"max":2},"rate":{"min":1,"max":2},"total_cost":{"min":1,"max":2},` +
			`"payment":{"min":1,"max":2},"propousal_link":{"link":"https://x"}}]}`, ""},
		{200, `{"search_id":"x","status":"done","name":"Bank","decision":"has_approve","data":[{"product_type":"loan","decision":"pre_approved",` +
			`"amount":{"min":3,"max":2},"term":{"min":1,"max":2},"rate":{"min":1,"max":2},"total_cost":{"min":1,"max":2},` +
			`"payment":{"min":1,"max":2},"propousal_link":{"link":"https://x"}}]}`, "amount.min"},
		{400, `{"search_id":"","message":"bad"}`, "properties"},
		{503, `{"search_id":"","message":"later"}`, ""},
		{503, `{"search_id":"","message":"later","trace":"x"}`, `"trace"`},
		{500, `not json`, "not a JSON object"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.status, []byte(tt.body))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%d %s: %v", tt.status, tt.body, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%d %s: %v, want an error with %q", tt.status, tt.body, err, tt.want)
		}
	}
}
