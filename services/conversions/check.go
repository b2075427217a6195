package conversions

import (
	"fmt"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
)

// Report is what the bank's application system sends when a contract is signed. The offer
// is named by the proposal link (link, or its reference alone as token), or by search_id and
// offer while the search is still retained.
type Report struct {
	Token              string        `json:"token,omitempty"` // the link's ref (or a legacy link's token)
	Link               string        `json:"link,omitempty"`
	SearchID           string        `json:"search_id,omitempty"`
	Offer              string        `json:"offer,omitempty"`
	ContractDate       string        `json:"contract_date"`  // YYYY-MM-DD, Moscow
	Amount             *money.Amount `json:"amount"`         // roubles
	Term               *int          `json:"term,omitempty"` // months; loans only
	AdditionalServices *bool         `json:"additional_services"`
}

// Problem is one thing wrong with a report.
type Problem struct {
	Field string `json:"field"`
	// Reason is a code for a problem that no resend can mend (offerlink.Reason's, or
	// "too_late"): the report is recorded as refused.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// moscow is the zone contract dates are written in (no daylight saving since 2014).
var moscow = time.FixedZone("MSK", 3*60*60)

const dateLayout = "2006-01-02"

// ReasonTooLate is the code of a contract dated after its link's reporting window.
const ReasonTooLate = "too_late"

// Check turns a report of a contract for the offer the link described (offered) into the
// conversion to record at now, or lists every problem with it: a contract date that is not
// a date, lies in the future, before the search, or after the link's expiry plus window; an
// amount or term outside what was offered; a missing answer to whether additional services
// were sold. With offered nil (the offer could not be established, which the caller reports)
// the report's own fields are still checked, so that one answer names every problem.
func Check(r Report, offered *offerlink.Claims, window time.Duration, now time.Time) (contracts.Conversion, []Problem) {
	var problems []Problem
	add := func(field, format string, args ...any) {
		problems = append(problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var c contracts.Conversion
	if offered != nil {
		c = contracts.Conversion{
			SearchID: offered.SearchID, Offer: offered.Offer, ProductType: offered.ProductType,
			Decision: offered.Decision, ContractDate: r.ContractDate, Term: r.Term,
			Offered:    contracts.OfferedRanges{Amount: offered.Amount, Term: offered.Term, Rate: offered.Rate},
			ReportedAt: now.UTC(), State: contracts.ConversionQueued,
		}
		id, err := contracts.ConversionKey(offered.SearchID, offered.Offer)
		if err != nil {
			add("offer", "%v", err)
		}
		c.ID = id
	}

	if day, err := time.ParseInLocation(dateLayout, r.ContractDate, moscow); r.ContractDate == "" {
		add("contract_date", "required: the day the contract was signed, YYYY-MM-DD")
	} else if err != nil {
		add("contract_date", "%q is not a date as YYYY-MM-DD", r.ContractDate)
	} else {
		today := now.In(moscow).Format(dateLayout)
		switch d := day.Format(dateLayout); {
		case d > today:
			add("contract_date", "%s is in the future (today is %s in Moscow)", d, today)
		case offered != nil && d < time.Unix(offered.IssuedAt, 0).In(moscow).Format(dateLayout):
			add("contract_date", "%s is before the search the offer was made in (%s)", d,
				time.Unix(offered.IssuedAt, 0).In(moscow).Format(dateLayout))
		case offered != nil && d > offered.ReportableUntil(window).In(moscow).Format(dateLayout):
			add("contract_date", "%s is after the link's expiry (%s) and the reporting window of %s", d,
				time.Unix(offered.Expiry, 0).In(moscow).Format(dateLayout), window)
			problems[len(problems)-1].Reason = ReasonTooLate
		}
	}

	switch {
	case r.Amount == nil:
		add("amount", "required: the contract's amount (for a card, its limit) in roubles")
	case *r.Amount <= 0:
		add("amount", "%s is not a positive amount", *r.Amount)
	case offered != nil && (*r.Amount < offered.Amount.Min || *r.Amount > offered.Amount.Max):
		add("amount", "%s is outside the offered %s–%s", *r.Amount, offered.Amount.Min, offered.Amount.Max)
	default:
		c.Amount = *r.Amount
	}

	switch {
	case r.Term != nil && *r.Term < 1:
		add("term", "%d is not a number of months", *r.Term)
	case offered == nil:
	case offered.ProductType == contracts.ProductCreditCard && r.Term != nil:
		add("term", "a credit card has no term")
	case offered.ProductType != contracts.ProductLoan:
	case r.Term == nil:
		add("term", "required for a loan: the contract's term in months")
	case offered.Term != nil && (*r.Term < offered.Term.Min || *r.Term > offered.Term.Max):
		add("term", "%d months is outside the offered %d–%d", *r.Term, offered.Term.Min, offered.Term.Max)
	}

	if r.AdditionalServices == nil {
		add("additional_services", "required: true if insurance or other services were sold with the contract")
	} else {
		c.AdditionalServices = *r.AdditionalServices
	}
	return c, problems
}
