package pricing

import (
	"fmt"
	"slices"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
)

// AbsoluteCeiling is ceiling.Absolute, the 292 % no offer exceeds with or without a table.
var AbsoluteCeiling = ceiling.Absolute

// ReasonAboveCeiling is the reason code of a search that lost a product to the ceiling:
// nothing in the product's range could be offered within it.
const ReasonAboveCeiling = "psk_above_ceiling"

// underCeiling reports whether the product's ПСК at one amount, at the rate given (the highest
// offered: the ПСК grows with the rate), stays within the ceiling of its category at every
// offered term. Without fees the ПСК is the rate at any term; with them each term's flows
// are weighed at the ceiling (costAbove), which says as much as solving them would.
func underCeiling(p *catalog.Product, amount money.Amount, rate money.Rate, terms contracts.TermRange, lim ceiling.Limits, net *[]float64) bool {
	for n := terms.Min; n <= terms.Max; n++ {
		ceil := lim.At(p.ProductType, amount, n)
		if !p.Fees.Any() {
			if rate > ceil {
				return false
			}
			continue
		}
		*net = schedule(p, amount, rate, n, *net)
		if costAbove(*net, ceil) {
			return false
		}
	}
	return true
}

// pieces splits an amount range at the ceiling's band edges, ascending: within a piece the
// ceiling depends on the term alone. A piece above an edge starts a kopeck above it, where
// its ПСК is highest ("over 30 000 ₽" holds 30 000.01 ₽).
func pieces(amount contracts.AmountRange, edges []money.Amount) []contracts.AmountRange {
	var out []contracts.AmountRange
	lo := amount.Min
	for _, e := range edges {
		if e < lo || e >= amount.Max {
			continue
		}
		out = append(out, contracts.AmountRange{Min: lo, Max: e})
		lo = e + 1
	}
	if lo <= amount.Max {
		out = append(out, contracts.AmountRange{Min: lo, Max: amount.Max})
	}
	return out
}

// allWithin reports whether every amount of the range is within the ceiling: within one
// piece fixed fees weigh less on a larger amount, so the ПСК falls (or stays) as the amount
// grows (see Price) and the piece's smallest amount decides.
func allWithin(p *catalog.Product, amount contracts.AmountRange, rate money.Rate, terms contracts.TermRange, lim ceiling.Limits, net *[]float64) bool {
	for _, pc := range pieces(amount, lim.Edges(p.ProductType)) {
		if !underCeiling(p, pc.Min, rate, terms, lim, net) {
			return false
		}
	}
	return true
}

// withinCeiling narrows the amount range to a part whose ПСК stays within the ceiling at
// every offered term, keeping the offer one range: the highest piece with an amount within
// it, from its smallest amount within (by bisection in whole roubles) up, extended down
// through the pieces below for as long as they are wholly within. ok is false when no
// amount of the range is within it. Only the amount is narrowed: a loan above its ceiling
// at short terms alone loses amounts (or the product), not terms, so that an offer's term
// range stays the one its product and the approval make.
func withinCeiling(p *catalog.Product, amount contracts.AmountRange, rate money.Rate, terms contracts.TermRange, lim ceiling.Limits, net *[]float64) (contracts.AmountRange, bool) {
	ps := pieces(amount, lim.Edges(p.ProductType))
	var got contracts.AmountRange
	found := false
	for k := len(ps) - 1; k >= 0; k-- {
		pc := ps[k]
		if !underCeiling(p, pc.Max, rate, terms, lim, net) {
			if found {
				break
			}
			continue
		}
		lo := smallestWithin(p, pc, rate, terms, lim, net)
		if !found {
			got, found = contracts.AmountRange{Min: lo, Max: pc.Max}, true
		} else {
			got.Min = lo
		}
		if lo != pc.Min {
			break
		}
	}
	if rouble := money.Roubles(1); found && got.Min > amount.Min && got.Min%rouble != 0 && got.Min < got.Max {
		// Cut at a piece's kopeck start, above an edge: the offer starts at the next whole
		// rouble (30 001 ₽), within the ceiling too, being higher in the same band.
		got.Min = min((got.Min/rouble+1)*rouble, got.Max)
	}
	return got, found
}

// smallestWithin is the smallest amount of a piece within the ceiling, given that its
// largest is: the piece's own minimum when that is, else the smallest whole rouble that is,
// else the largest amount alone.
func smallestWithin(p *catalog.Product, pc contracts.AmountRange, rate money.Rate, terms contracts.TermRange, lim ceiling.Limits, net *[]float64) money.Amount {
	if underCeiling(p, pc.Min, rate, terms, lim, net) {
		return pc.Min
	}
	rouble := money.Roubles(1)
	lo, hi := pc.Min/rouble, pc.Max/rouble // lo·₽ ≤ pc.Min, which is above
	if hi*rouble <= pc.Min || !underCeiling(p, hi*rouble, rate, terms, lim, net) {
		return pc.Max // only the top, in kopecks
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if underCeiling(p, mid*rouble, rate, terms, lim, net) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi * rouble
}

// ParseCatalog is catalog.Parse and then PricingProblems under the absolute ceiling alone:
// what the offers service checks every revision with. A product that could be offered above
// 292 % somewhere in its range, at any grade, or whose payment rounds to 0, is a problem of
// the catalog, so that a bank learns of it when it puts the catalog, not from a missing
// offer. The category ceilings are checked by yactl catalog before a put (CheckCeilings), not
// here: a new ceiling table must never make a running service refuse its catalog, and
// pricing narrows or drops what the table forbids anyway.
func ParseCatalog(data []byte) (*catalog.Catalog, error) {
	c, err := catalog.Parse(data)
	if err != nil {
		return nil, err
	}
	if problems := PricingProblems(c, ceiling.Limits{}); len(problems) > 0 {
		return nil, &catalog.ValidationError{Problems: problems}
	}
	return c, nil
}

// CheckCeilings is ParseCatalog under the ceilings of a table from at to at+window (the
// quarters in which a link made now can be followed): what yactl catalog refuses a catalog for.
func CheckCeilings(data []byte, t *ceiling.Table, at time.Time, window time.Duration) (*catalog.Catalog, error) {
	c, err := catalog.Parse(data)
	if err != nil {
		return nil, err
	}
	if problems := PricingProblems(c, t.Between(at, at.Add(window))); len(problems) > 0 {
		return nil, &catalog.ValidationError{Problems: problems}
	}
	return c, nil
}

// PricingProblems lists what only pricing can see is wrong with a catalog: the products
// whose ПСК can exceed its ceiling under lim somewhere in their range (every amount and term)
// at some grade's highest rate, with where; and the loans whose smallest amount has a
// monthly payment that rounds to 0, which no schedule can show.
func PricingProblems(c *catalog.Catalog, lim ceiling.Limits) []string {
	var problems []string
	var net []float64
	for i := range c.Products {
		p := &c.Products[i]
		terms := cardTerms(p)
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
			for _, pc := range pieces(p.Amount, lim.Edges(p.ProductType)) {
				if underCeiling(p, pc.Min, rates.Max, terms, lim, &net) {
					continue
				}
				cost, _ := costRange(p, pc, rates, terms, &net)
				where := fmt.Sprintf("at %s ₽", pc.Min)
				if ok := underCeiling(p, pc.Max, rates.Max, terms, lim, &net); ok {
					where = fmt.Sprintf("below %s ₽", smallestWithin(p, pc, rates.Max, terms, lim, &net))
				}
				problems = append(problems, fmt.Sprintf("product %q grade %s: ПСК up to %s %% %s, above its category's ceiling of %s %% there (353-FZ art. 6 part 11)",
					p.ID, grade, cost.Max, where, lowestCeiling(p.ProductType, pc.Min, terms, lim)))
				break
			}
		}
	}
	return problems
}

// lowestCeiling is the lowest ceiling at an amount over the terms, for a message.
func lowestCeiling(pt contracts.ProductType, amount money.Amount, terms contracts.TermRange, lim ceiling.Limits) money.Rate {
	lowest := ceiling.Absolute
	for n := terms.Min; n <= terms.Max; n++ {
		lowest = min(lowest, lim.At(pt, amount, n))
	}
	return lowest
}

func sortedGrades(rates map[string]contracts.RateRange) []string {
	grades := make([]string, 0, len(rates))
	for g := range rates {
		grades = append(grades, g)
	}
	slices.Sort(grades)
	return grades
}
