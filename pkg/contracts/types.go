package contracts

import (
	"fmt"

	"github.com/demobank/yacredits/pkg/money"
)

// ProductType is what the client asks for.
type ProductType string

const (
	ProductLoan       ProductType = "loan"
	ProductCreditCard ProductType = "credit_card"
)

// Valid reports whether p is one of the products the API knows.
func (p ProductType) Valid() bool { return p == ProductLoan || p == ProductCreditCard }

// OfferDecision is how firm an offer is (the spec's data[].decision).
type OfferDecision string

const (
	// PreApproved offers come from the bank's pre-approval data; final terms follow the
	// application.
	PreApproved OfferDecision = "pre_approved"
	// FullApproved offers are terms the bank commits to.
	FullApproved OfferDecision = "full_approved"
)

// Valid reports whether d is a known offer decision.
func (d OfferDecision) Valid() bool { return d == PreApproved || d == FullApproved }

// Decision is the search-level answer (the spec's top-level decision).
type Decision string

const (
	HasApprove Decision = "has_approve"
	Rejected   Decision = "rejected"
)

// AmountRange is a min/max pair of roubles.
type AmountRange struct {
	Min money.Amount `json:"min"`
	Max money.Amount `json:"max"`
}

// RateRange is a min/max pair of percentages.
type RateRange struct {
	Min money.Rate `json:"min"`
	Max money.Rate `json:"max"`
}

// TermRange is a min/max pair of months.
type TermRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Payment is the monthly payment: Min and Max (roubles) for loans, CCRate (percent of the
// debt) for cards. Exactly one form is set.
type Payment struct {
	Min    *money.Amount `json:"min,omitempty"`
	Max    *money.Amount `json:"max,omitempty"`
	CCRate *money.Rate   `json:"cc_rate,omitempty"`
}

// ProposalLink is where the client applies: a web link, an app deep link, or both.
type ProposalLink struct {
	Link string `json:"link,omitempty"`
	Deep string `json:"deep,omitempty"`
}

// Offer is one element of the answer's data array, in exactly the shape the spec gives
// (including its spelling of "propousal_link").
type Offer struct {
	ProductType        ProductType   `json:"product_type"`
	Decision           OfferDecision `json:"decision"`
	Amount             AmountRange   `json:"amount"`
	Term               *TermRange    `json:"term,omitempty"`
	Rate               RateRange     `json:"rate"`
	TotalCost          RateRange     `json:"total_cost"`
	Payment            Payment       `json:"payment"`
	GracePeriod        *int          `json:"grace_period,omitempty"`
	SpecialConditions  []string      `json:"special_conditions,omitempty"`
	RequiredDocuments  []string      `json:"required_documents,omitempty"`
	ChoosableDocuments []string      `json:"choosable_documents,omitempty"`
	ProposalLink       ProposalLink  `json:"propousal_link"`
}

// Validate checks the invariants the spec puts on an offer.
func (o Offer) Validate() error {
	switch {
	case !o.ProductType.Valid():
		return fmt.Errorf("offer: unknown product type %q", o.ProductType)
	case !o.Decision.Valid():
		return fmt.Errorf("offer: unknown decision %q", o.Decision)
	case o.Amount.Min <= 0 || o.Amount.Min > o.Amount.Max:
		return fmt.Errorf("offer: bad amount range %s..%s", o.Amount.Min, o.Amount.Max)
	case o.Rate.Min < 0 || o.Rate.Min > o.Rate.Max:
		return fmt.Errorf("offer: bad rate range %s..%s", o.Rate.Min, o.Rate.Max)
	case o.TotalCost.Min < o.Rate.Min || o.TotalCost.Max < o.Rate.Max || o.TotalCost.Min > o.TotalCost.Max:
		return fmt.Errorf("offer: total cost %s..%s below rate or inverted", o.TotalCost.Min, o.TotalCost.Max)
	case o.ProposalLink.Link == "" && o.ProposalLink.Deep == "":
		return fmt.Errorf("offer: no proposal link")
	}
	if o.ProductType == ProductLoan {
		if o.Term == nil || o.Term.Min < 1 || o.Term.Min > o.Term.Max {
			return fmt.Errorf("offer: a loan needs a term range")
		}
		if o.Payment.Min == nil || o.Payment.Max == nil || *o.Payment.Min > *o.Payment.Max || o.Payment.CCRate != nil {
			return fmt.Errorf("offer: a loan needs payment min and max")
		}
		if o.GracePeriod != nil {
			return fmt.Errorf("offer: a loan has no grace period")
		}
	} else {
		if o.Term != nil {
			return fmt.Errorf("offer: a card has no term")
		}
		if o.Payment.CCRate == nil || o.Payment.Min != nil || o.Payment.Max != nil {
			return fmt.Errorf("offer: a card needs payment.cc_rate only")
		}
		if o.GracePeriod == nil || *o.GracePeriod < 0 {
			return fmt.Errorf("offer: a card needs a grace period")
		}
	}
	return nil
}
