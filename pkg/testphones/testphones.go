// Package testphones reads TEST_PHONES: phone numbers whose searches never touch the
// pre-approval data and always end the same way, so that Yandex's testers, and the bank's
// own conformance checks, can run every path of the API against any deployment. The
// gateway marks their searches as tests (kept apart in logs, traces and metrics); scoring
// decides them from the file instead of the pre-approvals.
//
// The file is JSON:
//
//	{"phones": [
//	  {"phone": "+79000000001", "outcome": "approve", "products": ["loan", "credit_card"], "grade": "A", "limit": 1000000},
//	  {"phone": "+79000000002", "outcome": "reject"},
//	  {"phone": "+79000000003", "outcome": "approve", "grade": "B", "limit": 300000, "delay": "3s"},
//	  {"phone": "+79000000004", "outcome": "deadline"}
//	]}
package testphones

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

// Outcome is how a test phone's searches end.
type Outcome string

const (
	// Approve: decided by the credit policy as if the bank had pre-approved the phone for
	// Products at Grade up to Limit, so that the offers are the catalog's real ones.
	Approve Outcome = "approve"
	// Reject: declined, whatever the product.
	Reject Outcome = "reject"
	// Deadline: never decided, so that the search is finished rejected at its deadline.
	Deadline Outcome = "deadline"
)

// MaxDelay bounds Delay: scoring holds the message that long, within one attempt's time.
const MaxDelay = 3 * time.Second

// Phone is one test phone's fixed outcome.
type Phone struct {
	Outcome  Outcome
	Products []contracts.ProductType // Approve: the products approved; the others get the policy's answer for no pre-approval
	Grade    string
	Limit    money.Amount
	Kind     contracts.OfferDecision // pre_approved (default) or full_approved
	// Delay holds the decision back (at most MaxDelay), so that a search outlasts the sync
	// budget and is answered pending first: the asynchronous model, on demand.
	Delay time.Duration
	// Masked is the phone as people may see it.
	Masked string
}

// Approves reports whether the phone is approved for product.
func (p *Phone) Approves(product contracts.ProductType) bool {
	return p.Outcome == Approve && slices.Contains(p.Products, product)
}

// Set is the test phones, by their keyed hash: what the services see of a phone.
type Set struct {
	byHash map[[32]byte]*Phone
}

// Lookup returns the test phone with this hash; nil for every other phone, and on a nil Set.
func (s *Set) Lookup(hash [32]byte) *Phone {
	if s == nil {
		return nil
	}
	return s.byHash[hash]
}

// Len is the number of test phones.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byHash)
}

//go:embed demo.json
var demoJSON []byte

// Demo returns the standalone binary's test phones file, for it to write and use.
func Demo() []byte { return slices.Clone(demoJSON) }

// Load reads the file at path (empty: no test phones, a nil Set) and hashes its phones
// with h.
func Load(path string, h *phone.Hasher) (*Set, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("test phones: %w", err)
	}
	s, err := Parse(data, h)
	if err != nil {
		return nil, fmt.Errorf("test phones %s: %w", path, err)
	}
	return s, nil
}

type fileWire struct {
	Phones []phoneWire `json:"phones"`
}

type phoneWire struct {
	Phone    string                  `json:"phone"`
	Outcome  Outcome                 `json:"outcome"`
	Products []contracts.ProductType `json:"products,omitempty"`
	Grade    string                  `json:"grade,omitempty"`
	Limit    *money.Amount           `json:"limit,omitempty"`
	Kind     contracts.OfferDecision `json:"kind,omitempty"`
	Delay    string                  `json:"delay,omitempty"`
}

// Parse reads a test phones file, reporting every problem at once.
func Parse(data []byte, h *phone.Hasher) (*Set, error) {
	var f fileWire
	if err := jsonv2.Unmarshal(data, &f, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, err
	}
	s := &Set{byHash: make(map[[32]byte]*Phone, len(f.Phones))}
	var problems []error
	bad := func(i int, format string, args ...any) {
		problems = append(problems, fmt.Errorf("phones[%d]: "+format, append([]any{i}, args...)...))
	}
	for i, w := range f.Phones {
		n, err := phone.Parse(w.Phone)
		if err != nil {
			bad(i, "phone: %v", err)
			continue
		}
		p := &Phone{Outcome: w.Outcome, Products: w.Products, Grade: w.Grade, Kind: w.Kind, Masked: n.Masked()}
		switch w.Outcome {
		case Approve:
			if len(p.Products) == 0 {
				p.Products = []contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard}
			}
			for _, pt := range p.Products {
				if !pt.Valid() {
					bad(i, "products: %q is not loan or credit_card", pt)
				}
			}
			if p.Grade == "" {
				bad(i, "grade: an approved phone needs the grade the policy prices it at")
			}
			if w.Limit == nil || *w.Limit <= 0 {
				bad(i, "limit: an approved phone needs a positive limit, in roubles")
			} else {
				p.Limit = *w.Limit
			}
			if p.Kind == "" {
				p.Kind = contracts.PreApproved
			}
			if !p.Kind.Valid() {
				bad(i, "kind: %q is not pre_approved or full_approved", p.Kind)
			}
		case Reject, Deadline:
			if len(w.Products) > 0 || w.Grade != "" || w.Limit != nil || w.Kind != "" {
				bad(i, "products, grade, limit and kind belong to an approved phone only")
			}
		default:
			bad(i, "outcome: %q is not approve, reject or deadline", w.Outcome)
		}
		if w.Delay != "" {
			d, err := time.ParseDuration(w.Delay)
			switch {
			case err != nil:
				bad(i, "delay: %v", err)
			case d < 0 || d > MaxDelay:
				bad(i, "delay: %s is outside 0…%s", d, MaxDelay)
			case w.Outcome == Deadline:
				bad(i, "delay: a deadline phone is never answered, there is nothing to delay")
			default:
				p.Delay = d
			}
		}
		key := h.Sum(n)
		if _, dup := s.byHash[key]; dup {
			bad(i, "phone %s is listed twice", p.Masked)
			continue
		}
		s.byHash[key] = p
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return s, nil
}
