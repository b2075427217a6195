package pricing

import (
	"fmt"
	"slices"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
)

// AbsoluteCeiling is the ПСК no consumer credit may exceed whatever its category: 292 % a
// year (Federal Law 353-FZ art. 6 part 11, the absolute cap added by Federal Law 554-FZ of
// 27.12.2018, in force since 1 July 2019). The category ceilings (the Bank of Russia's average
// market values plus one third) are lower and are not applied here yet.
var AbsoluteCeiling = money.Percent(292)

// ReasonAboveCeiling is the reason code of a search that lost a product to the ceiling:
// nothing in the product's range could be offered within it.
const ReasonAboveCeiling = "psk_above_ceiling"

// maxCostAt is the highest ПСК of the product at one amount over the offered terms, at the
// highest rate: where Price shows the maximum lies for a given amount.
func maxCostAt(p *catalog.Product, amount money.Amount, rate money.Rate, terms contracts.TermRange, net *[]float64) (money.Rate, bool) {
	first := terms.Min
	if !p.Fees.Any() {
		first = terms.Max
	}
	var hi money.Rate
	i := monthly(rate)
	for n := first; n <= terms.Max; n++ {
		var err error
		if i, err = monthlyCostOf(p, amount, rate, n, net, i); err != nil {
			return 0, false
		}
		hi = max(hi, annualPercent(i))
	}
	return hi, true
}

// withinCeiling narrows the amount range to where the ПСК stays within ceiling at every
// offered term and rate: fixed fees weigh less on a larger amount, so the ПСК falls (or
// stays) as the amount grows (see Price), and the smallest whole-rouble amount that keeps
// it within the ceiling is found by bisection. ok is false when no amount of the range
// does, or the rate alone is above the ceiling.
func withinCeiling(p *catalog.Product, amount contracts.AmountRange, rates contracts.RateRange, terms contracts.TermRange, ceiling money.Rate, net *[]float64) (contracts.AmountRange, bool) {
	if rates.Max > ceiling {
		return amount, false // the ПСК is never below the rate
	}
	within := func(a money.Amount) bool {
		c, ok := maxCostAt(p, a, rates.Max, terms, net)
		return ok && c <= ceiling
	}
	if !within(amount.Max) {
		return amount, false
	}
	if within(amount.Min) {
		return amount, true
	}
	// Whole roubles: the smallest one within the ceiling, by bisection over (lo, hi].
	rouble := money.Roubles(1)
	lo, hi := amount.Min/rouble, amount.Max/rouble // lo·₽ ≤ amount.Min, which is above
	if !within(hi * rouble) {
		return contracts.AmountRange{Min: amount.Max, Max: amount.Max}, true // only the top, in kopecks
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if within(mid * rouble) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return contracts.AmountRange{Min: hi * rouble, Max: amount.Max}, true
}

// ParseCatalog is catalog.Parse and then PricingProblems: a product that could be offered
// above the absolute ceiling somewhere in its range, at any grade, or whose payment rounds to
// 0, is a problem of the catalog too, so that a bank learns of it when it puts the catalog,
// not from a missing offer. (Pricing would
// narrow or drop such a product anyway: no offer leaves above the ceiling either way.)
func ParseCatalog(data []byte) (*catalog.Catalog, error) {
	c, err := catalog.Parse(data)
	if err != nil {
		return nil, err
	}
	if problems := PricingProblems(c); len(problems) > 0 {
		return nil, &catalog.ValidationError{Problems: problems}
	}
	return c, nil
}

// PricingProblems lists what only pricing can see is wrong with a catalog: the products
// whose ПСК can exceed AbsoluteCeiling over their whole range (every amount and term) at
// some grade's highest rate, with where; and the loans whose smallest amount has a monthly
// payment that rounds to 0, which no schedule can show.
func PricingProblems(c *catalog.Catalog) []string {
	var problems []string
	var net []float64
	for i := range c.Products {
		p := &c.Products[i]
		terms := contracts.TermRange{Min: CardTermMonths, Max: CardTermMonths}
		if p.Term != nil {
			terms = *p.Term
		}
		for _, grade := range sortedGrades(p.Rates) {
			rates := p.Rates[grade]
			if p.ProductType == contracts.ProductLoan && p.Term != nil &&
				AnnuityPayment(p.Amount.Min, rates.Min, p.Term.Max)+monthlyCharge(p, p.Amount.Min) <= 0 {
				problems = append(problems, fmt.Sprintf("product %q grade %s: the monthly payment of its smallest amount (%s ₽ over %d months) rounds to 0",
					p.ID, grade, p.Amount.Min, p.Term.Max))
				continue
			}
			cost, ok := costRange(p, p.Amount, rates, terms, &net)
			if !ok || cost.Max <= AbsoluteCeiling {
				continue
			}
			where := "at its smallest amount"
			if within, ok := withinCeiling(p, p.Amount, rates, terms, AbsoluteCeiling, &net); ok {
				where = fmt.Sprintf("below %s ₽", within.Min)
			}
			problems = append(problems, fmt.Sprintf("product %q grade %s: ПСК up to %s %% %s, above the legal ceiling of %s %% (353-FZ art. 6 part 11)",
				p.ID, grade, cost.Max, where, AbsoluteCeiling))
		}
	}
	return problems
}

func sortedGrades(rates map[string]contracts.RateRange) []string {
	grades := make([]string, 0, len(rates))
	for g := range rates {
		grades = append(grades, g)
	}
	slices.Sort(grades)
	return grades
}
