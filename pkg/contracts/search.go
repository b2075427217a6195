package contracts

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Status is where a search stands. It only ever moves from Pending to Done.
type Status string

const (
	Pending Status = "pending"
	Done    Status = "done"
)

// Reasons a search was finished without offers; recorded for people, never sent to Yandex.
const (
	ReasonDeadline   = "deadline_exceeded"
	ReasonDeadLetter = "dead_letter"
	ReasonNoOffers   = "no_matching_offer"
)

// SearchSchema is the version of the Search record encoding.
const SearchSchema = 1

// ErrAlreadyDone is returned by Finish on a search that is already done: state only moves
// forward, so the first finish wins and every later one is a no-op for its caller.
var ErrAlreadyDone = errors.New("search already done")

// Search is the record kept in the searches bucket under the lowercase search_id. It is
// what a poll reads and what a retry is compared with.
type Search struct {
	Schema   int           `json:"schema"`
	Request  LoanRequested `json:"request"`
	Props    []string      `json:"props,omitempty"` // opaque, kept, never interpreted
	Status   Status        `json:"status"`
	Decision Decision      `json:"decision,omitempty"`
	Offers   []Offer       `json:"offers,omitempty"`
	Reasons  []string      `json:"reasons,omitempty"` // why, in machine codes
	DoneAt   *time.Time    `json:"done_at,omitempty"`
	// Trace is the W3C trace context of the request that created the search, so that work
	// done for it later (a re-send, the deadline, a poll's link) joins the same trace.
	Trace map[string]string `json:"trace,omitempty"`
}

// NewSearch is the pending record of a freshly accepted request.
func NewSearch(req LoanRequested, props []string) *Search {
	return &Search{Schema: SearchSchema, Request: req, Props: props, Status: Pending}
}

// Finish returns a copy of s marked done with offers (none means rejected) and the
// reasons. It refuses a search that is already done.
func (s Search) Finish(offers []Offer, reasons []string, now time.Time) (*Search, error) {
	if s.Status == Done {
		return nil, ErrAlreadyDone
	}
	s.Status = Done
	s.Decision = Rejected
	s.Offers = nil
	if len(offers) > 0 {
		s.Decision = HasApprove
		s.Offers = offers
	}
	s.Reasons = reasons
	t := now.UTC()
	s.DoneAt = &t
	return &s, nil
}

// Overdue reports whether s is still pending past its deadline.
func (s Search) Overdue(now time.Time) bool {
	return s.Status == Pending && now.After(s.Request.Deadline)
}

// EncodeSearch writes the record for the bucket.
func EncodeSearch(s *Search) ([]byte, error) { return json.Marshal(s) }

// DecodeSearch reads a record from the bucket.
func DecodeSearch(data []byte) (*Search, error) {
	var s Search
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: decode search: %v", ErrInvalid, err)
	}
	if s.Schema != SearchSchema {
		return nil, fmt.Errorf("%w: search schema %d, want %d", ErrInvalid, s.Schema, SearchSchema)
	}
	if s.Status != Pending && s.Status != Done {
		return nil, fmt.Errorf("%w: search status %q", ErrInvalid, s.Status)
	}
	return &s, nil
}
