// Package catalog holds the bank's cash-loan and credit-card products as data, so that the
// bank can change what it sells without a redeploy. A catalog is a JSON document that the
// bank writes by hand; Parse reads it strictly and Validate lists every problem at once, so
// that a catalog is either accepted whole or refused with all its mistakes named.
//
// # File format
//
// One object with a "products" array. Each product:
//
//	{
//	  "id": "cash-standard",            // slug (a-z, 0-9, -): unique, goes into the proposal link
//	  "product_type": "loan",           // "loan" or "credit_card"
//	  "decision": "full_approved",      // optional; absent: the scoring decision is used
//	  "amount": {"min": 30000, "max": 5000000},   // roubles (for a card: the credit limit)
//	  "term": {"min": 12, "max": 60},             // months; loans only
//	  "rates": {"A": {"min": 19.9, "max": 22.9}}, // percent a year by risk grade
//	  "fees": {                                   // optional, each part optional
//	    "issuance": {"percent": 1.5, "fixed": 990}, // paid once at issue
//	    "monthly":  {"percent": 0.2},               // paid with every monthly payment
//	    "annual":   {"fixed": 990}                  // cards only: yearly service
//	  },
//	  "grace_period": 120,              // cards only: interest-free days
//	  "min_payment": 3,                 // cards only: percent of the debt (payment.cc_rate)
//	  "special_conditions": ["…"], "required_documents": ["Паспорт РФ"], "choosable_documents": ["2-НДФЛ"],
//	  "proposal_link": {
//	    "link": "https://bank.example/apply",
//	    "deep": "demobank://apply"
//	  }
//	}
//
// Money is written in roubles with at most two decimals and percentages with at most three,
// as JSON numbers; they are stored as [money.Amount] and [money.Rate], so no value read from
// the file carries binary floating-point drift. Fee percentages are of the amount (of the
// limit for a card), not of the remaining debt. A client whose grade has no entry in "rates"
// is not offered the product: that is how a product is restricted to the better grades.
//
// Unknown fields and repeated keys are errors: the file is ours, and a misspelt "fess" or a
// second "A" grade must not silently drop a fee or a rate.
package catalog

import (
	"bytes"
	_ "embed"
	"fmt"
	"net/url"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// Catalog is the set of products the bank offers. Treat a parsed Catalog as read-only: the
// offers service shares one between concurrent searches.
type Catalog struct {
	Products []Product `json:"products"`
}

// Product is one loan or card product with its prices for each risk grade.
type Product struct {
	ID          string                  `json:"id"`
	ProductType contracts.ProductType   `json:"product_type"`
	Decision    contracts.OfferDecision `json:"decision,omitempty"`
	Amount      contracts.AmountRange   `json:"amount"`
	Term        *contracts.TermRange    `json:"term,omitempty"`
	// Rates maps a risk grade (as scoring names it) to the nominal rate range for it.
	Rates map[string]contracts.RateRange `json:"rates"`
	Fees  Fees                           `json:"fees,omitzero"`
	// GracePeriod is in days; zero means absent, and only a loan may lack one.
	GracePeriod int `json:"grace_period,omitempty"`
	// MinPayment is the card's minimum monthly payment as a percent of the debt.
	MinPayment         money.Rate   `json:"min_payment,omitempty"`
	SpecialConditions  []string     `json:"special_conditions,omitempty"`
	RequiredDocuments  []string     `json:"required_documents,omitempty"`
	ChoosableDocuments []string     `json:"choosable_documents,omitempty"`
	ProposalLink       LinkTemplate `json:"proposal_link"`
}

// Fees are the charges a product has besides interest. A nil fee is none.
type Fees struct {
	Issuance *Fee `json:"issuance,omitempty"` // once, when the credit is issued
	Monthly  *Fee `json:"monthly,omitempty"`  // with every monthly payment, e.g. insurance
	Annual   *Fee `json:"annual,omitempty"`   // cards: the yearly service fee, charged in advance
}

// Any reports whether the product charges anything besides interest.
func (f Fees) Any() bool { return f.Issuance != nil || f.Monthly != nil || f.Annual != nil }

// Fee is a charge of a percent of the amount, a fixed sum, or both added together.
type Fee struct {
	Percent money.Rate   `json:"percent,omitempty"`
	Fixed   money.Amount `json:"fixed,omitempty"`
}

// Charge is what the fee comes to on amount, the percentage rounded half-up to kopecks as
// it would be billed. The catalog limits keep amount × percent far inside int64.
func (f Fee) Charge(amount money.Amount) money.Amount {
	const scale = 100_000 // a money.Rate of 100 % as a fraction
	return (amount*money.Amount(f.Percent)+scale/2)/scale + f.Fixed
}

// LinkTemplate is where a client applies for the product. Every link made from it gets the
// offer's reference (offerlink), which says which search and offer it is, to the bank's
// services alone. {search_id} and {product_id} are still replaced where a template has them,
// but each puts in the URL, beside the reference, what the reference keeps from anyone
// else: leave them out.
type LinkTemplate struct {
	Link string `json:"link,omitempty"`
	Deep string `json:"deep,omitempty"`
}

// Placeholders a link template may contain.
const (
	SearchIDPlaceholder  = "{search_id}"
	ProductIDPlaceholder = "{product_id}"
)

// Expand fills the template in. Both values are query-escaped, with spaces as %20 rather
// than '+', so that the result is right whether the placeholder sits in a path or a query.
func (t LinkTemplate) Expand(searchID, productID string) contracts.ProposalLink {
	r := strings.NewReplacer(SearchIDPlaceholder, escape(searchID), ProductIDPlaceholder, escape(productID))
	var l contracts.ProposalLink
	if t.Link != "" {
		l.Link = r.Replace(t.Link)
	}
	if t.Deep != "" {
		l.Deep = r.Replace(t.Deep)
	}
	return l
}

func escape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// Parse reads a catalog file and validates it. A decoding error stops at the first problem
// (there is no catalog to check yet); a decoded catalog is checked whole and an invalid one
// is returned as a *ValidationError listing every problem.
func Parse(data []byte) (*Catalog, error) {
	// The strict decoder refuses a repeated name (encoding/json keeps the last of two
	// equal keys without a word, which would let a second "A" grade or a second "fees"
	// quietly replace the first), invalid UTF-8, unknown fields, names in the wrong case
	// and anything after the object.
	var c Catalog
	if err := jsonv2.Unmarshal(data, &c, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

//go:embed demo.json
var demoJSON []byte

// DemoJSON returns the demo catalog file: three cash loans and two cards for grades A, B
// and C. It is a copy, for an admin command to print or store.
func DemoJSON() []byte { return bytes.Clone(demoJSON) }

// Demo parses the demo catalog. Each call returns a fresh Catalog, so no caller can change
// another's. Its tests guarantee the error is nil.
func Demo() (*Catalog, error) { return Parse(demoJSON) }
