package pricing

import (
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
)

// Expected values were computed independently with mpmath at 50 digits by bisection on the
// law's equation (ПСК = 1200·i):
//
//	from mpmath import mp, mpf; mp.dps = 50
//	def psk(flows):  # [(month, roubles)], issue negative
//	    f = lambda i: sum(mpf(a)/(1+i)**q for q, a in flows); lo, hi = mpf(-0.5), mpf(10)
//	    for _ in range(300): lo, hi = ((lo+hi)/2, hi) if f((lo+hi)/2) > 0 else (lo, (lo+hi)/2)
//	    return lo*1200
func TestFullCost(t *testing.T) {
	annuity12 := 100_000 * 0.01 / (1 - math.Pow(1.01, -12)) // 8 884.878867834…, unrounded
	monthly := func(first []CashFlow, payment float64, months int) []CashFlow {
		for k := 1; k <= months; k++ {
			first = append(first, CashFlow{Period: k, Amount: payment})
		}
		return first
	}
	tests := []struct {
		name  string
		flows []CashFlow
		want  money.Rate
	}{
		// By hand: 101 000 / 100 000 = 1 + i, i = 1 % a month, ПСК = 1 % · 12 = 12 %.
		{"one month at 1 %", []CashFlow{{0, -100_000}, {1, 101_000}}, 12_000},
		// By hand: (1 + i)^12 = 1.12, i = 1.12^(1/12) − 1 = 0.00948879…, ПСК = 11.38655… %:
		// a year's compound 12 % is less than 12 % nominal.
		{"one payment after a year", []CashFlow{{0, -100_000}, {12, 112_000}}, 11_387},
		// The exact annuity at 12 % is by definition the cash flows whose rate is 1 % a month.
		{"exact annuity, no fees", monthly([]CashFlow{{0, -100_000}}, annuity12, 12), 12_000},
		// The payments rounded up to 8 884.88 cost a little more: 12.0000242… %, still 12.000.
		{"kopeck-rounded annuity, no fees", monthly([]CashFlow{{0, -100_000}}, 8_884.88, 12), 12_000},
		// A 2 % issuance fee: the client gets 98 000 and pays the same 8 884.88 twelve times,
		// 15.8545469… % (mpmath: psk([(0, -98000)] + [(k, 8884.88) for k in range(1, 13)])).
		{"2 % issuance fee", monthly([]CashFlow{{0, -100_000}, {0, 2_000}}, 8_884.88, 12), 15_855},
		// Sum of payments equals the issue: the money costs nothing.
		{"interest-free", monthly([]CashFlow{{0, -1_000}}, 100, 10), 0},
		// Less comes back than went out: 990/1000 = 1 + i, i = −1 %, ПСК = −12 %.
		{"repaid short", []CashFlow{{0, -1_000}, {1, 990}}, -12_000},
		// Order does not matter, nor do empty periods between flows: 15.39629… % (mpmath).
		{"unordered with a gap", []CashFlow{{3, 50_000}, {0, -100_000}, {6, 56_000}, {1, 0}}, 15_396},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FullCost(tt.flows)
			if err != nil || got != tt.want {
				t.Errorf("FullCost = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestFullCostRefusesWhatIsNotACredit(t *testing.T) {
	tests := []struct {
		name  string
		flows []CashFlow
	}{
		{"no flows", nil},
		{"nothing repaid", []CashFlow{{0, -100}}},
		{"nothing issued", []CashFlow{{0, 100}, {1, 100}}},
		{"fee larger than the issue", []CashFlow{{0, -100}, {0, 150}, {1, 10}}},
		{"repayment before the issue", []CashFlow{{0, 10}, {1, -100}, {2, 100}}},
		{"issue after a repayment", []CashFlow{{0, -100}, {1, 60}, {2, -10}, {3, 60}}},
		{"negative period", []CashFlow{{-1, -100}, {1, 110}}},
		{"period beyond a century", []CashFlow{{0, -100}, {maxPeriod + 1, 110}}},
		{"not a number", []CashFlow{{0, -100}, {1, math.NaN()}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := FullCost(tt.flows); !errors.Is(err, ErrNotCredit) {
				t.Errorf("FullCost = %s, %v; want ErrNotCredit", got, err)
			}
		})
	}
}

// TestFullCostOfProducts is the property behind the spec's rule: on the flows Price builds,
// the ПСК equals the nominal rate without fees and is never below it with them, at any
// amount, rate and term. It holds because the flows are built so, not by clamping.
func TestFullCostOfProducts(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var buf []float64
	for range 3_000 {
		p := &catalog.Product{ProductType: contracts.ProductLoan}
		card := rng.IntN(4) == 0
		if card {
			p.ProductType = contracts.ProductCreditCard
		}
		amount := money.Roubles(10_000) + money.Amount(rng.Int64N(int64(money.Roubles(10_000_000))))
		rate := money.Rate(rng.Int64N(int64(money.Percent(80))))
		months := 1 + rng.IntN(360)
		if card {
			p.MinPayment = money.Rate(1 + rng.Int64N(int64(money.Percent(10))))
			months = CardMonths(p)
		}
		fees := rng.IntN(2) == 0
		if fees {
			p.Fees.Issuance = randomFee(rng, 5)
			p.Fees.Monthly = randomFee(rng, 1)
			if card {
				p.Fees.Annual = randomFee(rng, 5)
			}
		}
		got, err := fullCostOf(p, amount, rate, months, &buf)
		switch {
		case err != nil:
			t.Fatalf("%+v at (%s, %s, %d): %v", p.Fees, amount, rate, months, err)
		case !p.Fees.Any() && got != rate:
			t.Fatalf("no fees at (%s, %s, %d): ПСК %s; want the rate", amount, rate, months, got)
		case got < rate:
			t.Fatalf("%+v at (%s, %s, %d): ПСК %s below the rate", p.Fees, amount, rate, months, got)
		}
	}
}

// randomFee is nil a third of the time, else up to maxPercent % and up to 1 000 roubles.
func randomFee(rng *rand.Rand, maxPercent int64) *catalog.Fee {
	if rng.IntN(3) == 0 {
		return nil
	}
	return &catalog.Fee{
		Percent: money.Rate(rng.Int64N(int64(money.Percent(maxPercent)))),
		Fixed:   money.Amount(rng.Int64N(int64(money.Roubles(1_000)))),
	}
}

func TestSchedule(t *testing.T) {
	p := &catalog.Product{Fees: catalog.Fees{
		Issuance: &catalog.Fee{Percent: money.Percent(2), Fixed: money.Roubles(100)},
		Monthly:  &catalog.Fee{Percent: 200},
		Annual:   &catalog.Fee{Fixed: money.Roubles(990)},
	}}
	// 1 200 ₽ at 12 % for 3 months, in kopecks: payment 1 200·0.01/(1 − 1.01^−3) = 408.0265 ₽,
	// plus 0.2 % of 1 200 = 2.40 ₽ a month; at issue −1 200 + 24 + 100 + 990 (annual, in advance).
	got := schedule(p, money.Roubles(1_200), money.Percent(12), 3, nil)
	want := []float64{-8_600, 41_042.6534, 41_042.6534, 41_042.6534}
	if len(got) != len(want) {
		t.Fatalf("schedule = %v; want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-4 {
			t.Errorf("schedule[%d] = %.4f; want %.4f", i, got[i], want[i])
		}
	}
}

// The fast path finds the root the bracketing solver finds, to the solver's precision, for
// credits issued at once: an issue (less its fees) in month 0, then payments that may vary
// (annual fees, a card's falling minimum payments). From the guesses the callers give (zero,
// the nominal rate, a nearby root) it always answers; from far ones it may hand over.
func TestNewtonFindsTheBracketedRoot(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	fast := 0
	for n := range 5000 {
		months := 1 + rng.IntN(120)
		net := make([]float64, months+1)
		principal := 1e3 + rng.Float64()*1e7
		net[0] = -principal * (1 - rng.Float64()*0.1)
		rate := rng.Float64() * 0.1
		payment := principal * rate / (1 - math.Pow(1+rate, -float64(months)))
		if rate == 0 {
			payment = principal / float64(months)
		}
		for k := 1; k <= months; k++ {
			net[k] = payment * (0.5 + rng.Float64())
			if k%12 == 0 && rng.IntN(2) == 0 {
				net[k] += principal * 0.01
			}
		}
		if err := checkSigns(net); err != nil {
			continue
		}
		guess := []float64{0, rate, rate * 2, -0.5 + rng.Float64(), 3}[n%5]
		want, err := bracketed(net, guess)
		if err != nil {
			t.Fatalf("flows %d: the bracketing solver: %v", n, err)
		}
		got, ok := newton(net, guess)
		if !ok {
			// Handed to the bracketing solver, which is allowed from a far guess (a step from
			// far above the root can land below −1), never from one the callers give.
			if n%5 < 3 {
				t.Errorf("flows %d (%d months): the fast path gave up from guess %g", n, months, guess)
			}
			continue
		}
		if math.Abs(got-want) > 1e-12 || annualPercent(got) != annualPercent(want) {
			t.Fatalf("flows %d (%d months, guess %g): newton %.17g, bracketed %.17g", n, months, guess, got, want)
		}
		fast++
	}
	// At least the near guesses' must have been the fast path's, or this compared nothing.
	if fast < 3000 {
		t.Errorf("the fast path answered %d of 5000 flows, want 3000 at least", fast)
	}
}

// Flows not issued at once (money issued again in a later month) are never the fast path's.
func TestNewtonLeavesLaterIssuesToTheBracket(t *testing.T) {
	if _, ok := newton([]float64{-100, -50, 80, 80}, 0.01); ok {
		t.Error("the fast path took flows with a second issue")
	}
}

// TestWeighingAgreesWithSolving checks the shortcut underCeiling and costRange take against
// the solve it replaces: for generated products at random amounts, rates and terms, weighing
// the flows at a rate (costAbove, costBelow) says what rounding their solved ПСК would, at
// the ПСК itself and at the values beside it, where a tie would show; and costRange, which
// solves only the terms that could widen its range, returns the range that solving every
// term gives.
func TestWeighingAgreesWithSolving(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var buf []float64
	for round := range 400 {
		c := generateCatalog(t, rng, 1)
		p := &c.Products[0]
		grade := slices.Sorted(maps.Keys(p.Rates))[0]
		rates := p.Rates[grade]
		terms := cardTerms(p)
		if p.Term != nil {
			terms = *p.Term
		}
		a := p.Amount.Min + money.Amount(rng.Int64N(int64(p.Amount.Max-p.Amount.Min)+1))
		n := terms.Min + rng.IntN(terms.Max-terms.Min+1)
		cost, err := fullCostOf(p, a, rates.Max, n, &buf)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		net := schedule(p, a, rates.Max, n, nil)
		for _, c := range []money.Rate{cost - 1, cost, cost + 1} {
			if got, want := costAbove(net, c), cost > c; got != want {
				t.Fatalf("round %d, %s: costAbove(%s) = %t with the ПСК %s", round, p.ID, c, got, cost)
			}
			if got, want := costBelow(net, c), cost < c; got != want {
				t.Fatalf("round %d, %s: costBelow(%s) = %t with the ПСК %s", round, p.ID, c, got, cost)
			}
		}

		amount := contracts.AmountRange{Min: p.Amount.Min, Max: a}
		got, ok := costRange(p, amount, rates, terms, &buf)
		want := contracts.RateRange{Min: money.Rate(math.MaxInt64), Max: money.Rate(math.MinInt64)}
		for n := terms.Min; n <= terms.Max; n++ {
			lo, err1 := fullCostOf(p, amount.Max, rates.Min, n, &buf)
			hi, err2 := fullCostOf(p, amount.Min, rates.Max, n, &buf)
			if err1 != nil || err2 != nil {
				t.Fatalf("round %d: %v, %v", round, err1, err2)
			}
			want.Min, want.Max = min(want.Min, lo), max(want.Max, hi)
		}
		if !ok || got != want {
			t.Fatalf("round %d, %s over %d…%d months: costRange = %+v, %t; solving every term gives %+v",
				round, p.ID, terms.Min, terms.Max, got, ok, want)
		}
	}
}
