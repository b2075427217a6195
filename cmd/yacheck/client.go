package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client calls the deployment as Yandex does, with the credentials it was given.
type client struct {
	base   string // the base URL, without a trailing slash
	token  string // a bearer token, or empty
	user   string // HTTP Basic client id, or empty
	secret string
	http   *http.Client
}

// answer is one HTTP answer as the checks read it.
type answer struct {
	status int
	header http.Header
	raw    []byte
	obj    map[string]any // the body as a JSON object; nil when it is not one
	took   time.Duration
}

func (a *answer) String() string {
	body := string(a.raw)
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return fmt.Sprintf("%d %s", a.status, strings.TrimSpace(body))
}

// str returns a top-level string field and whether it is one.
func (a *answer) str(name string) (string, bool) {
	if a.obj == nil {
		return "", false
	}
	s, ok := a.obj[name].(string)
	return s, ok
}

type request struct {
	method      string
	path        string // with its query
	contentType string // "" sends none
	body        string
	noAuth      bool // send no credentials, whatever the client has
}

func (c *client) do(ctx context.Context, r request) (*answer, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, body)
	if err != nil {
		return nil, err
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if !r.noAuth {
		switch {
		case c.token != "":
			req.Header.Set("Authorization", "Bearer "+c.token)
		case c.user != "":
			req.SetBasicAuth(c.user, c.secret)
		}
	}
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", r.method, r.path, err)
	}
	a := &answer{status: res.StatusCode, header: res.Header, raw: raw, took: time.Since(start)}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // integers must stay tellable from fractions
	var obj map[string]any
	if dec.Decode(&obj) == nil && !dec.More() {
		a.obj = obj
	}
	return a, nil
}

// post submits a search body as JSON.
func (c *client) post(ctx context.Context, path, body string) (*answer, error) {
	return c.do(ctx, request{method: http.MethodPost, path: path, contentType: "application/json", body: body})
}

// get polls a search.
func (c *client) get(ctx context.Context, path, id string) (*answer, error) {
	return c.do(ctx, request{method: http.MethodGet, path: path + "?search_id=" + url.QueryEscape(id)})
}

// errPending is a search not done by the time the caller stopped waiting.
var errPending = errors.New("still pending")

// untilDone polls path for id every interval until the answer is done, the within has
// passed (errPending) or an answer is neither done nor pending. Every pending answer it
// passes is given to onPending, so a check can hold each to the contract.
func (c *client) untilDone(ctx context.Context, path, id string, within time.Duration, onPending func(*answer) error) (*answer, error) {
	deadline := time.Now().Add(within)
	for {
		a, err := c.get(ctx, path, id)
		if err != nil {
			return nil, err
		}
		if a.status != http.StatusOK {
			return a, fmt.Errorf("poll answered %s; the contract (§4.1, §4.2) says 200 until and after done", a)
		}
		switch st, _ := a.str("status"); st {
		case "done":
			return a, nil
		case "pending":
			if onPending != nil {
				if err := onPending(a); err != nil {
					return a, err
				}
			}
		default:
			return a, fmt.Errorf("poll answered status %q (%s); the contract (§4) knows done and pending", st, a)
		}
		if time.Now().After(deadline) {
			return a, errPending
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
