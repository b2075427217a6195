package pricing

import (
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
