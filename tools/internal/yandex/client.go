// Package yandex plays Yandex's side of the Credits API, as our contract
// (../shared/spec/credits-api.md) describes it: it submits searches, retries the ones that
// were not accepted with the same search_id and body, polls the pending ones until done, and
// keeps every answer it was given, so that a run can be accounted for afterwards (Account).
// It knows the contract only, never the server's code: the fault suite and the load
// generator judge the system by what it answers.
package yandex

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Path is the method's path; the contract serves the same handlers on three spellings.
const Path = "/integrations/v1/api/loan_approval"

// Request is one search as Yandex sends it.
type Request struct {
	SearchID string
	Body     []byte
	// PreApproved marks a client the bank's data approves: a rejection of it is a fault's
	// doing, not the bank's decision.
	PreApproved bool
}

// Answer is one HTTP exchange: what was sent where, and what came back.
type Answer struct {
	Method   string
	Base     int // index into Client.Bases
	Sent     time.Time
	Received time.Time
	Status   int    // 0: no answer (connection refused, reset, timed out)
	Err      string // the transport error, when Status is 0
	State    string // a 200's status: "done" or "pending"
	Decision string // a done answer's decision
	Outcome  string // a digest of a done answer's decision and offers: equal answers, equal digests
	Message  string // an error answer's message
	Shape    string // why the body is outside the documented shape; empty when it is not
	// RetryAfter is what a 503 asked for.
	RetryAfter time.Duration
}

// Done reports whether the answer is a finished search.
func (a Answer) Done() bool { return a.Status == 200 && a.State == "done" }

// Took is how long the answer took.
func (a Answer) Took() time.Duration { return a.Received.Sub(a.Sent) }

// Search is a request and every answer it got, in order.
type Search struct {
	Request
	Answers []Answer
}

// Client sends searches to one or more gateways.
type Client struct {
	Bases     []string // the gateways' base URLs, http://host:port
	HTTP      *http.Client
	Header    http.Header   // added to every request (credentials)
	PollEvery time.Duration // between polls of a pending search (default 200 ms)
	// Pick chooses the gateway for each call (default: round robin over Bases).
	Pick func() int
	// Light reads only an answer's status and state, without checking its whole shape: a
	// load generator's own CPU should go to making load, on the machine it measures.
	Light bool

	mu   sync.Mutex
	next int
}

func (c *Client) pick() int {
	if c.Pick != nil {
		return c.Pick()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	return c.next % len(c.Bases)
}

// Run submits s until it is accepted, then polls it until it is done, keeping every answer
// in s.Answers. A 503 or an answer that never came is retried with the same search_id and
// body, after the Retry-After the server asked for (1 s without one). It returns when the
// search is done or ctx ends.
func (c *Client) Run(ctx context.Context, s *Search) {
	for !c.post(ctx, s) {
		if !sleep(ctx, retryDelay(s.Answers[len(s.Answers)-1])) {
			return
		}
	}
	if last := s.Answers[len(s.Answers)-1]; last.Done() {
		return
	}
	every := c.PollEvery
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	for sleep(ctx, every) {
		a := c.exchange(ctx, http.MethodGet, s.SearchID, nil)
		if ctx.Err() != nil && a.Status == 0 {
			return // our own give-up, not the server's answer
		}
		s.Answers = append(s.Answers, a)
		if a.Done() {
			return
		}
	}
}

// Poll asks for s once and keeps the answer.
func (c *Client) Poll(ctx context.Context, s *Search) {
	s.Answers = append(s.Answers, c.exchange(ctx, http.MethodGet, s.SearchID, nil))
}

// post sends the search once and reports whether it was accepted (a 200 in the right shape).
func (c *Client) post(ctx context.Context, s *Search) bool {
	a := c.exchange(ctx, http.MethodPost, s.SearchID, s.Body)
	if ctx.Err() != nil && a.Status == 0 {
		return true // our own give-up: stop here, and record nothing
	}
	s.Answers = append(s.Answers, a)
	return a.Status == 200 || (a.Status != 0 && a.Status != 503 && a.Status < 500)
}

func (c *Client) exchange(ctx context.Context, method, searchID string, body []byte) Answer {
	base := c.pick()
	url := c.Bases[base] + Path
	var rd io.Reader
	if method == http.MethodGet {
		url += "?search_id=" + searchID
	} else {
		rd = bytes.NewReader(body)
	}
	a := Answer{Method: method, Base: base, Sent: time.Now()}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		a.Received, a.Err = time.Now(), err.Error()
		return a
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		a.Received, a.Err = time.Now(), err.Error()
		return a
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	a.Received, a.Status = time.Now(), res.StatusCode
	if err != nil {
		a.Status, a.Err = 0, "reading the body: "+err.Error()
		return a
	}
	if c.Light {
		var b struct{ Status, Decision string }
		_ = json.Unmarshal(raw, &b)
		a.State, a.Decision = b.Status, b.Decision
		if a.Done() {
			a.Outcome = "light"
		}
		return a
	}
	b, shapeErr := Parse(res.StatusCode, raw)
	if b != nil {
		a.State, a.Decision, a.Message = b.Status, b.Decision, b.Message
		if b.Done() {
			a.Outcome = digest(b.Outcome())
		}
	}
	if shapeErr != nil {
		a.Shape = shapeErr.Error()
	}
	if res.StatusCode == 503 && res.Header.Get("Retry-After") == "" {
		a.Shape = "503 without Retry-After"
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && res.StatusCode == 503 {
		a.RetryAfter = time.Duration(ra) * time.Second
	}
	return a
}

// retryDelay is how long to wait before sending a refused search again.
func retryDelay(a Answer) time.Duration {
	switch {
	case a.RetryAfter > 0:
		return a.RetryAfter
	case a.Status == 0:
		return 250 * time.Millisecond // no server answered: try the next gateway soon
	}
	return time.Second
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
