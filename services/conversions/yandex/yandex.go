// Package yandex is the one place that knows how conversions are sent to Yandex: the wire
// format, the credentials and what each answer means. The credits pages define no method
// for it; the sibling «Займы — API для партнеров» page «Подтверждение обработки заявки» does,
// and the contract (spec §9) follows it: `POST` a body `{"partner_id": <integer>, "data":
// [<item>, …]}`, each item `offer_id`, `request_id` (the search_id), `amount` and
// `additional_services`, and nothing beyond these unless Yandex's manager asks for it. A change
// of the format is a change of this file.
//
// What Yandex sees on a repeat: delivery is at least once (the bank may be stopped after
// Yandex's 200 and before it recorded it), and a repeat carries the same request_id and
// offer_id, the pair by which Yandex recognises it. Every send is the bulk form (a batch of
// one is still a list), and a batch is accepted or refused as a whole.
package yandex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// Client sends confirmations to Yandex's endpoint.
type Client struct {
	URL       string       // the endpoint
	Token     string       // sent as "Authorization: Bearer <token>"
	PartnerID int64        // the bank's id at Yandex
	HTTP      *http.Client // its Timeout bounds one send
}

// Batch is the body of one send (spec §9).
type Batch struct {
	PartnerID int64  `json:"partner_id"`
	Data      []Item `json:"data"`
}

// Item is one confirmation: the offer of a search, and the contract signed on it.
type Item struct {
	OfferID            string       `json:"offer_id"`   // the offer's id in our answer: the product id
	RequestID          string       `json:"request_id"` // the search_id of the Yandex search
	Amount             money.Amount `json:"amount"`     // the contract's amount
	AdditionalServices bool         `json:"additional_services"`
}

// ItemOf is the confirmation of a conversion.
func ItemOf(c contracts.Conversion) Item {
	return Item{OfferID: c.Offer, RequestID: c.SearchID, Amount: c.Amount, AdditionalServices: c.AdditionalServices}
}

// RetryableError is a send that may succeed later: a timeout, a lost connection, a 5xx, a
// 429, or an answer that says our credentials or address are wrong (401, 403, 404, which an
// operator fixes without the conversions being at fault). After is the wait the endpoint
// asked for (Retry-After), zero when it said none.
type RetryableError struct {
	Status int // 0: no answer
	After  time.Duration
	Err    error
}

func (e *RetryableError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("yandex: no answer: %v", e.Err)
	}
	return fmt.Sprintf("yandex: %d: %v", e.Status, e.Err)
}

func (e *RetryableError) Unwrap() error { return e.Err }

// PermanentError is a refusal that no retry changes (another 4xx): the conversions are kept
// as failed with Yandex's answer.
type PermanentError struct {
	Status int
	Answer string // the body, cut to MaxAnswer bytes
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("yandex refused the batch: %d %s", e.Status, e.Answer)
}

// MaxAnswer is how much of an answer's body is kept.
const MaxAnswer = 1024

// MaxRetryAfter caps a Retry-After: an hour's pause is already an incident to look at.
const MaxRetryAfter = time.Hour

// Send delivers a batch. It returns nil once Yandex accepted all of it (any 2xx), a
// *RetryableError or a *PermanentError otherwise.
func (c *Client) Send(ctx context.Context, conversions []contracts.Conversion) error {
	b := Batch{PartnerID: c.PartnerID, Data: make([]Item, len(conversions))}
	for i, conv := range conversions {
		b.Data[i] = ItemOf(conv)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return &PermanentError{Answer: "encode: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return &PermanentError{Answer: "request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	res, err := c.HTTP.Do(req)
	if err != nil {
		return &RetryableError{Err: err}
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, MaxAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20)) // let the connection be reused
	text := strings.ToValidUTF8(strings.TrimSpace(string(answer)), "?")
	switch s := res.StatusCode; {
	case s >= 200 && s < 300:
		return nil
	case s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || s >= 500 ||
		s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusNotFound:
		return &RetryableError{Status: s, After: retryAfter(res.Header.Get("Retry-After"), time.Now()), Err: errors.New(text)}
	default:
		return &PermanentError{Status: s, Answer: text}
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > 0 {
			d = time.Duration(min(n, int64(MaxRetryAfter/time.Second))) * time.Second
		}
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	return max(0, min(d, MaxRetryAfter))
}
