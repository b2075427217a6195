// Package pricing turns a credit decision and the product catalog into the offers Yandex
// shows: amount, term and rate ranges, the monthly payment and the full cost of credit
// (ПСК) as Federal Law 353-FZ art. 6 defines it. Everything here is a plain function of its
// arguments: no clock, no I/O, so every number can be recomputed by hand from the catalog.
package pricing

import (
	"cmp"
	"slices"
	"strings"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
)

// CardMonths is how many monthly minimum payments repay a card's whole limit on the
// schedule its ПСК is computed on (see Price): ceil(100 / min_payment), at most
// maxCardMonths.
func CardMonths(p *catalog.Product) int {
	if p.MinPayment <= 0 {
		return maxCardMonths // unreachable for a valid catalog: a card has a positive one
	}
	return min(int((hundredPercent+p.MinPayment-1)/p.MinPayment), maxCardMonths)
}

// maxCardMonths bounds a card's schedule at thirty years: a minimum payment below 0.28 % of
// the limit has the rest repaid in the last month.
const maxCardMonths = 360

const hundredPercent = money.Rate(100_000)

// cardTerms are the terms a card's ПСК is computed over: a loan's offered terms, a card's
// schedule.
func cardTerms(p *catalog.Product) contracts.TermRange {
	n := CardMonths(p)
	return contracts.TermRange{Min: n, Max: n}
}

// Price returns the offers for a scored search, best first: lowest total_cost.min, ties by
// product id, so equal inputs always give the same answer. A declined or nil score gets
// none (nil). The catalog must have passed Validate.
//
// A product is offered when it is of the asked type, has a rate for the client's grade, and
// its bounds overlap the approved ranges:
//   - amount: the product's bounds ∩ the approved s.Amount; term (loans): the product's
//     bounds ∩ s.Term when scoring set one. An empty overlap drops the product.
//   - The requested amount and term are a wish, not a filter (spec §4.1): they never narrow
//     a range. Scoring decides what happens to a request above the limit and expresses it in
//     s.Amount and s.Term; so whenever the bank approved the requested amount and term and a
//     product sells them, they lie in that product's ranges by construction, unless the ПСК
//     ceiling (Quotes) cuts them off: the law comes first, and the decision's trail says
//     offered_narrowed_to_ceiling.
//   - decision: the product's own, else scoring's s.Kind.
//   - payment (loans): the regular monthly payment, the kopeck-rounded annuity plus the
//     product's monthly fee (insurance, service), because that is what leaves the client's
//     account each month and a fee left out would make an insured loan look cheaper than it
//     is. The annuity grows with amount and rate and falls with term (TestAnnuityMonotone),
//     and the fee grows with amount, so the extremes are at the corners: min at the smallest
//     amount, lowest rate and longest term, max at the largest amount, highest rate and
//     shortest term.
//   - payment (cards): cc_rate is the product's minimum payment, with its grace period.
//
// total_cost is computed on flows month by month from the issue: the amount issued less
// the issuance fee (and a card's annual fee, charged in advance) at month 0, then the
// annuity plus the monthly fee every month. The annuity and percentage fees enter unrounded:
// the ПСК is a property of the terms, and kopeck rounding of a schedule that does not exist
// yet can move a small loan's three-decimal result off its nominal rate. With no fees the flows at i = r are
// exactly the annuity's definition, so the ПСК equals the nominal rate; fees only add
// positive flows, so at i = r the flows are worth ≥ 0 and the root is ≥ r: ПСК ≥ rate
// follows from the math (Offer.Validate asserts it; an offer failing it is dropped, which
// the tests show never happens for a valid catalog).
//
// Where the ПСК extremes lie: more rate raises every repayment, so the ПСК grows with the
// rate. Dividing the flows by the amount leaves percentage fees unchanged and shrinks fixed
// ones, so it falls (or stays) as the amount grows. The term has no such direction when
// there are fees: a monthly fee costs most in ПСК at middling terms. So the ПСК min is the
// lowest over every offered term at (largest amount, lowest rate) and the max the highest at
// (smallest amount, highest rate); without fees it is the rate at any term, and one term is
// computed.
//
// Cards: a credit with a limit needs an assumed use of it. We follow the assumption 353-FZ
// art. 6 makes for a credit limit: the whole limit drawn on the day the contract is made and
// repaid by the contract's minimum payments. Our minimum payment (min_payment, the answer's
// cc_rate) is taken as min_payment % of the limit plus the interest on the debt each month,
// the last payment the rest: CardMonths payments. The issuance fee is at month 0, the
// annual service fee in advance for each year begun, any monthly fee with each payment; the
// grace period is not applied (the limit is drawn at once, not by purchases repaid in time).
func Price(c *catalog.Catalog, s *contracts.Scored) []contracts.Offer {
	offers, _ := Quote(c, s)
	return offers
}

// Quote is Price with the reason codes of the products it had to drop for a reason the
// search record should keep (ReasonAboveCeiling), each code once. Price and Quote hold
// offers to the absolute ceiling alone; Quotes takes the category ceilings too.
func Quote(c *catalog.Catalog, s *contracts.Scored) (offers []contracts.Offer, reasons []string) {
	r := Quotes(c, s, ceiling.Limits{})
	if len(r.Quotes) == 0 {
		return nil, r.Reasons
	}
	offers = make([]contracts.Offer, len(r.Quotes))
	for i, q := range r.Quotes {
		offers[i] = q.Offer
	}
	return offers, r.Reasons
}

// Quoted is an offer with the catalog product it prices.
type Quoted struct {
	ProductID string
	Offer     contracts.Offer
}

// Result is what Quotes found: the offers, best first, with their product ids; the reason
// codes the search record keeps; and, for the decision's trail, what became of every product
// of the asked type (Outcome codes by product id).
type Result struct {
	Quotes  []Quoted
	Reasons []string
	Trail   map[string]string
}

// What became of a product of the asked type, in a Result's Trail.
const (
	Offered          = "offered"
	OfferedNarrowed  = "offered_narrowed_to_ceiling" // offered on the part of its range within the ceiling
	DroppedNoRate    = "no_rate_for_grade"
	DroppedAmount    = "amount_outside_approval"
	DroppedTerm      = "term_outside_approval"
	DroppedCeiling   = "above_ceiling"
	DroppedInvalid   = "no_valid_offer"     // unreachable for a valid catalog (see Price)
	DroppedOffersMax = "cut_by_offers_max"  // set by the offers service, which caps the answer
	DroppedLapsed    = "preapproval_lapsed" // set by the offers service
)

// Quotes prices a scored search under the ceilings lim (ceiling.Table.Between: the zero
// Limits hold offers to the absolute ceiling alone). See Price for the rules.
func Quotes(c *catalog.Catalog, s *contracts.Scored, lim ceiling.Limits) Result {
	var r Result
	if c == nil || s == nil || s.Verdict != contracts.Approved || s.Amount == nil {
		return r
	}
	r.Trail = make(map[string]string)
	var net []float64 // one buffer for every ПСК of this search
	for i := range c.Products {
		p := &c.Products[i]
		if p.ProductType != s.Request.ProductType {
			continue
		}
		o, outcome := offer(p, s, lim, &net)
		r.Trail[p.ID] = outcome
		switch outcome {
		case Offered, OfferedNarrowed:
			r.Quotes = append(r.Quotes, Quoted{p.ID, o})
		case DroppedCeiling:
			if !slices.Contains(r.Reasons, ReasonAboveCeiling) {
				r.Reasons = append(r.Reasons, ReasonAboveCeiling)
			}
		}
	}
	slices.SortFunc(r.Quotes, func(a, b Quoted) int {
		return cmp.Or(cmp.Compare(a.Offer.TotalCost.Min, b.Offer.TotalCost.Min), strings.Compare(a.ProductID, b.ProductID))
	})
	return r
}

// offer prices one product of the asked type for the search, or says why it is not offered.
func offer(p *catalog.Product, s *contracts.Scored, lim ceiling.Limits, net *[]float64) (contracts.Offer, string) {
	rates, ok := p.Rates[s.Grade]
	if !ok {
		return contracts.Offer{}, DroppedNoRate
	}
	amount := contracts.AmountRange{Min: max(p.Amount.Min, s.Amount.Min), Max: min(p.Amount.Max, s.Amount.Max)}
	if amount.Min > amount.Max {
		return contracts.Offer{}, DroppedAmount
	}
	o := contracts.Offer{
		ProductType: p.ProductType,
		Decision:    cmp.Or(p.Decision, s.Kind),
		Amount:      amount,
		Rate:        rates,
		// Cloned so that an offer stored in a search record never shares memory with a
		// catalog that a later update replaces.
		SpecialConditions:  slices.Clone(p.SpecialConditions),
		RequiredDocuments:  slices.Clone(p.RequiredDocuments),
		ChoosableDocuments: slices.Clone(p.ChoosableDocuments),
		ProposalLink:       p.ProposalLink.Expand(s.Request.AsSent(), p.ID),
	}
	terms := cardTerms(p)
	switch p.ProductType {
	case contracts.ProductLoan:
		if p.Term == nil {
			return contracts.Offer{}, DroppedInvalid
		}
		terms = *p.Term
		if s.Term != nil {
			terms = contracts.TermRange{Min: max(terms.Min, s.Term.Min), Max: min(terms.Max, s.Term.Max)}
			if terms.Min > terms.Max {
				return contracts.Offer{}, DroppedTerm
			}
		}
		lo := AnnuityPayment(amount.Min, rates.Min, terms.Max) + monthlyCharge(p, amount.Min)
		hi := AnnuityPayment(amount.Max, rates.Max, terms.Min) + monthlyCharge(p, amount.Max)
		o.Term = &contracts.TermRange{Min: terms.Min, Max: terms.Max}
		o.Payment = contracts.Payment{Min: &lo, Max: &hi}
	case contracts.ProductCreditCard:
		cc, grace := p.MinPayment, p.GracePeriod
		o.Payment = contracts.Payment{CCRate: &cc}
		o.GracePeriod = &grace
	}
	outcome := Offered
	if !allWithin(p, amount, rates.Max, terms, lim, net) {
		// Offered only where the law allows: the amounts whose ПСК stays within the ceiling.
		if amount, ok = withinCeiling(p, amount, rates.Max, terms, lim, net); !ok {
			return contracts.Offer{}, DroppedCeiling
		}
		o.Amount, outcome = amount, OfferedNarrowed
		if o.Payment.Min != nil { // both ends: the narrowing can cut either
			lo := AnnuityPayment(amount.Min, rates.Min, terms.Max) + monthlyCharge(p, amount.Min)
			hi := AnnuityPayment(amount.Max, rates.Max, terms.Min) + monthlyCharge(p, amount.Max)
			o.Payment.Min, o.Payment.Max = &lo, &hi
		}
		if !allWithin(p, amount, rates.Max, terms, lim, net) {
			return contracts.Offer{}, DroppedCeiling // unreachable: withinCeiling checked it
		}
	}
	cost, ok := costRange(p, amount, rates, terms, net)
	if !ok || cost.Max > ceiling.Absolute {
		return contracts.Offer{}, DroppedCeiling
	}
	o.TotalCost = cost
	if o.Validate() != nil {
		return contracts.Offer{}, DroppedInvalid
	}
	return o, outcome
}

func monthlyCharge(p *catalog.Product, amount money.Amount) money.Amount {
	if p.Fees.Monthly == nil {
		return 0
	}
	return p.Fees.Monthly.Charge(amount)
}

// costRange is the ПСК range over the offered ranges; Price explains where the extremes lie.
// The ends of the term range are solved first, since the ПСК mostly moves one way with the
// term; every term between is then weighed at the range found so far (costAbove, costBelow:
// one evaluation of its flows) and solved only when it widens it. Each solve starts from the
// last root of its side, which moves little from term to term; the first from the nominal
// rate, the answer when there are no fees, which need one term alone.
func costRange(p *catalog.Product, amount contracts.AmountRange, rates contracts.RateRange, terms contracts.TermRange, net *[]float64) (contracts.RateRange, bool) {
	first := terms.Min
	if !p.Fees.Any() {
		first = terms.Max
	}
	var r contracts.RateRange
	iLo, iHi := monthly(rates.Min), monthly(rates.Max)
	visit := func(n int, solve bool) error {
		var err error
		if *net = schedule(p, amount.Max, rates.Min, n, *net); solve || costBelow(*net, r.Min) {
			if iLo, err = monthlyCost(*net, iLo); err != nil {
				return err
			}
			if lo := annualPercent(iLo); solve || lo < r.Min {
				r.Min = lo
			}
		}
		if *net = schedule(p, amount.Min, rates.Max, n, *net); solve || costAbove(*net, r.Max) {
			if iHi, err = monthlyCost(*net, iHi); err != nil {
				return err
			}
			if hi := annualPercent(iHi); solve || hi > r.Max {
				r.Max = hi
			}
		}
		return nil
	}
	if visit(first, true) != nil {
		return r, false
	}
	if first < terms.Max && visit(terms.Max, false) != nil {
		return r, false
	}
	for n := first + 1; n < terms.Max; n++ {
		if visit(n, false) != nil {
			return r, false
		}
	}
	return r, true
}

// monthly is the nominal monthly rate as a fraction.
func monthly(rate money.Rate) float64 { return float64(rate) / rateScale }

// monthlyCostOf is the ПСК's monthly i of the product at one amount, rate and term, on the
// flows Price describes, built in buf (kopecks; the unit cancels out).
func monthlyCostOf(p *catalog.Product, amount money.Amount, rate money.Rate, months int, buf *[]float64, guess float64) (float64, error) {
	flows := schedule(p, amount, rate, months, *buf)
	*buf = flows
	return monthlyCost(flows, guess)
}

// fullCostOf is the ПСК of the product at one point: what the tests check the ranges with.
func fullCostOf(p *catalog.Product, amount money.Amount, rate money.Rate, months int, buf *[]float64) (money.Rate, error) {
	i, err := monthlyCostOf(p, amount, rate, months, buf, monthly(rate))
	return annualPercent(i), err
}

// schedule writes the net flows of month 0…months into buf, growing it as needed: a loan's
// annuity, or a card's minimum payments (months is then CardMonths, see Price).
func schedule(p *catalog.Product, amount money.Amount, rate money.Rate, months int, buf []float64) []float64 {
	flows := slices.Grow(buf[:0], months+1)[:months+1]
	a := float64(amount)
	flows[0] = -a + exactFee(p.Fees.Issuance, a)
	monthlyFee := exactFee(p.Fees.Monthly, a)
	if p.ProductType == contracts.ProductCreditCard {
		r, step, debt := monthly(rate), a*float64(p.MinPayment)/float64(hundredPercent), a
		for k := 1; k <= months; k++ {
			principal := min(step, debt)
			if k == months {
				principal = debt
			}
			flows[k] = debt*r + principal + monthlyFee
			debt -= principal
		}
	} else {
		payment := annuity(a, rate, months) + monthlyFee
		for k := 1; k <= months; k++ {
			flows[k] = payment
		}
	}
	if p.Fees.Annual != nil {
		for q := 0; q < months; q += 12 { // in advance, for each year begun
			flows[q] += exactFee(p.Fees.Annual, a)
		}
	}
	return flows
}

// exactFee is the fee on amount without rounding to kopecks, so that a percentage fee
// scales exactly with the amount (the ПСК argument in Price relies on it).
func exactFee(f *catalog.Fee, amount float64) float64 {
	if f == nil {
		return 0
	}
	return amount*float64(f.Percent)/100_000 + float64(f.Fixed)
}
