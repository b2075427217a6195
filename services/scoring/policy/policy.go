// Package policy is the bank's credit policy as configuration, and the decision it implies
// for one search. It is plain data and a plain function: no clock but the one passed in,
// no I/O.
//
// # The policy file
//
// JSON, strict: an unknown or repeated field is an error, and Parse reports every problem
// in one error, each naming its field. default.json, embedded as Default, is the shape:
//
//	{
//	  "version": 1,
//	  "products": {
//	    "loan": {
//	      "min_amount": 30000,                   // roubles: the least the bank lends
//	      "max_amount": 5000000,                 // roubles: the most, whatever the limit
//	      "term": {"min": 12, "max": 60},        // months; loans only, and required for them
//	      "over_limit": "offer_limit",           // or "reject"
//	      "grades": {"A": {"max_limit": 5000000}, "B": {"max_limit": 3000000}},
//	      "no_preapproval": {"action": "reject"},  // or {"action": "offer", "grade": "B", "limit": 100000}
//	      "expired": {"action": "reject"}          // the same choice, for a lapsed pre-approval
//	    },
//	    "credit_card": { … the same, without "term" … }
//	  }
//	}
//
// A product left out is not offered. A grade left out of "grades" is declined. Both
// fallbacks default to reject when absent.
//
// # The decision
//
// Decide walks the steps below; the first that declines ends it. Reasons records, in order,
// the code of every step that had something to say, and ends with ReasonApproved for an
// approval or with the declining code.
//
//  1. The product is not in the policy: ReasonProductNotOffered.
//  2. No pre-approval for the phone and product: ReasonNoPreapproval, then the no_preapproval
//     fallback; an expired one (judged at now): ReasonExpired, then the expired fallback.
//     A fallback "offer" continues with its grade and limit and kind pre_approved: the bank
//     never commits firmly to a client it has no data on.
//  3. The grade is not accepted: ReasonGradeNotAccepted.
//  4. The approved maximum is the least of the client's limit, the grade's max_limit and
//     the product's max_amount; below min_amount: ReasonLimitBelowMinimum.
//  5. A requested amount above that maximum: ReasonAmountOverLimit; declined under
//     over_limit "reject", else approved up to the maximum. A requested amount below
//     min_amount notes ReasonAmountBelowMinimum and is approved from the minimum: the spec
//     calls the amount a wish, not a filter.
//  6. A loan's requested term outside the policy's term: ReasonTermOutOfBounds, approved
//     with the policy's term range, for the same reason. A card's requested term is ignored.
//
// An approval carries Kind from the record, Amount {min_amount, maximum}, Term (loans) from
// the policy, and Grade. An absent amount or term constrains nothing.
package policy

import (
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// Policy is a validated credit policy. Build it with Parse or Default; Decide relies on
// what Parse checks. Treat it as read-only: Decide may run on it from many goroutines.
type Policy struct {
	Loan       *Product // nil: loans are not offered
	CreditCard *Product // nil: cards are not offered
}

// Product returns the policy for product t, or nil when it is not offered.
func (p *Policy) Product(t contracts.ProductType) *Product {
	if p == nil {
		return nil
	}
	switch t {
	case contracts.ProductLoan:
		return p.Loan
	case contracts.ProductCreditCard:
		return p.CreditCard
	}
	return nil
}

// Product is the policy for one product.
type Product struct {
	MinAmount     money.Amount
	MaxAmount     money.Amount
	Term          *contracts.TermRange // the approved term range; loans only
	OverLimit     OverLimit
	Grades        map[string]Grade // the accepted grades
	NoPreapproval Fallback         // for a client with no pre-approval for the product
	Expired       Fallback         // for a client whose pre-approval has lapsed
}

// Grade is what an accepted risk grade may get.
type Grade struct {
	MaxLimit money.Amount
}

// OverLimit is what to do when the requested amount exceeds the approved maximum.
type OverLimit string

const (
	// OfferLimit approves up to the maximum: the client sees what the bank can lend.
	OfferLimit OverLimit = "offer_limit"
	// RejectOverLimit declines the search.
	RejectOverLimit OverLimit = "reject"
)

// Action is what a fallback does.
type Action string

const (
	// Reject declines.
	Reject Action = "reject"
	// Offer approves as if the client had a pre-approval with the fallback's grade and limit.
	Offer Action = "offer"
)

// Fallback answers a client without a usable pre-approval. Grade and Limit are set only
// for Offer.
type Fallback struct {
	Action Action
	Grade  string
	Limit  money.Amount
}

// Reason codes, for logs and traces; they never reach Yandex.
const (
	ReasonApproved           = "approved"             // the last code of every approval
	ReasonProductNotOffered  = "product_not_offered"  // the policy has no such product
	ReasonNoPreapproval      = "no_preapproval"       // no record for the phone and product
	ReasonExpired            = "expired"              // the record lapsed before now
	ReasonGradeNotAccepted   = "grade_not_accepted"   // the grade is not in the product's grades
	ReasonLimitBelowMinimum  = "limit_below_minimum"  // the approved maximum is under min_amount
	ReasonAmountOverLimit    = "amount_over_limit"    // the requested amount exceeds the maximum
	ReasonAmountBelowMinimum = "amount_below_minimum" // the requested amount is under min_amount
	ReasonTermOutOfBounds    = "term_out_of_bounds"   // the requested term is outside the policy's
)

// Decide returns the credit decision for req, given the client's pre-approval for the
// requested product (nil when there is none; a record for another product counts as none)
// and the time now, which judges expiry and stamps ScoredAt. The package comment lists the
// steps. An approval passes contracts.NewScored for any policy Parse accepted.
func Decide(p *Policy, rec *preapproval.Record, req contracts.LoanRequested, now time.Time) contracts.Scored {
	s := contracts.Scored{Request: req, Verdict: contracts.Declined, ScoredAt: now}
	reasons := make([]string, 0, 4)
	declined := func(code string) contracts.Scored {
		s.Reasons = append(reasons, code)
		return s
	}

	pp := p.Product(req.ProductType)
	if pp == nil {
		return declined(ReasonProductNotOffered)
	}
	var (
		grade string
		limit money.Amount
		kind  contracts.OfferDecision
	)
	switch {
	case rec == nil || rec.Product != req.ProductType:
		if pp.NoPreapproval.Action != Offer {
			return declined(ReasonNoPreapproval)
		}
		reasons = append(reasons, ReasonNoPreapproval)
		grade, limit, kind = pp.NoPreapproval.Grade, pp.NoPreapproval.Limit, contracts.PreApproved
	case rec.Expired(now):
		s.Grade = rec.Grade
		if pp.Expired.Action != Offer {
			return declined(ReasonExpired)
		}
		reasons = append(reasons, ReasonExpired)
		grade, limit, kind = pp.Expired.Grade, pp.Expired.Limit, contracts.PreApproved
	default:
		grade, limit, kind = rec.Grade, rec.Limit, rec.Kind
		until := rec.Expires()
		s.ValidUntil = &until
	}
	s.Grade = grade

	g, ok := pp.Grades[grade]
	if !ok {
		return declined(ReasonGradeNotAccepted)
	}
	most := min(limit, g.MaxLimit, pp.MaxAmount)
	if most < pp.MinAmount {
		return declined(ReasonLimitBelowMinimum)
	}
	if req.Amount != nil {
		switch {
		case *req.Amount > most:
			if pp.OverLimit != OfferLimit {
				return declined(ReasonAmountOverLimit)
			}
			reasons = append(reasons, ReasonAmountOverLimit)
		case *req.Amount < pp.MinAmount:
			reasons = append(reasons, ReasonAmountBelowMinimum)
		}
	}
	if pp.Term != nil {
		if req.Term != nil && (*req.Term < pp.Term.Min || *req.Term > pp.Term.Max) {
			reasons = append(reasons, ReasonTermOutOfBounds)
		}
		term := *pp.Term
		s.Term = &term
	}
	s.Verdict = contracts.Approved
	s.Kind = kind
	s.Amount = &contracts.AmountRange{Min: pp.MinAmount, Max: most}
	s.Reasons = append(reasons, ReasonApproved)
	return s
}
