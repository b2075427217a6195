package pricing

import (
	"errors"
	"fmt"
	"math"

	"github.com/demobank/yacredits/pkg/money"
)

// CashFlow is one payment of a credit's schedule as Federal Law 353-FZ art. 6 part 2 sums
// them (ДП_k), seen from the bank.
type CashFlow struct {
	// Period is q_k, the whole base periods (months) from the issue to the payment. Every
	// flow of our schedules falls on a whole month, so e_k, the share of an incomplete base
	// period, is always zero and the law's factor (1 + e_k·i) is one.
	Period int
	// Amount is negative for money the bank pays out (the issue) and positive for what the
	// borrower pays (payments, fees). The unit does not matter; roubles read best. It is a
	// float because an offer's cost is computed on the exact annuity rather than on
	// kopeck-rounded payments (see Price).
	Amount float64
}

// ErrNotCredit is returned for flows whose full cost is undefined: nothing issued, nothing
// repaid, or an issue after a repayment (then the law's equation may have several roots).
var ErrNotCredit = errors.New("cash flows are not a credit")

const (
	// periodsPerYear is ЧБП for a monthly base period.
	periodsPerYear = 12
	// maxPeriod bounds a schedule at a century: it sizes a slice, so a typo must not.
	maxPeriod = 1200
	// tolerance is the solver's precision on the monthly rate: 1e-14 a month is about
	// 1e-11 % a year, eight orders of magnitude below the 0.001 % the result is rounded to.
	tolerance = 1e-14
	// newtonDone is the Newton step small enough to stop at (see solve).
	newtonDone = 1e-10
	// maxRate bounds the search at 2^20 a month: flows costing more are not a credit.
	maxRate = float64(1 << 20)
)

// FullCost is the full cost of credit (ПСК) of the flows, in percent a year rounded to three
// decimals (halves away from zero): ПСК = i · ЧБП · 100 with ЧБП = 12 and i the monthly rate that solves
// Σ ДП_k / (1+i)^q_k = 0. Flows in the same period are netted first, as the sum does.
//
// The flows must change sign once, from money issued to money repaid. Then, in v = 1/(1+i),
// the sum is a polynomial with one sign change in its coefficients, so by Descartes' rule
// it has exactly one root with v > 0, i.e. i > −1; and the sum falls as i grows, which lets
// a bracketing solver find that root without ever losing it.
func FullCost(flows []CashFlow) (money.Rate, error) {
	if len(flows) == 0 {
		return 0, fmt.Errorf("%w: no flows", ErrNotCredit)
	}
	last := 0
	for _, f := range flows {
		if f.Period < 0 || f.Period > maxPeriod {
			return 0, fmt.Errorf("%w: period %d outside 0…%d", ErrNotCredit, f.Period, maxPeriod)
		}
		if math.IsNaN(f.Amount) || math.IsInf(f.Amount, 0) {
			return 0, fmt.Errorf("%w: amount %v in period %d", ErrNotCredit, f.Amount, f.Period)
		}
		last = max(last, f.Period)
	}
	net := make([]float64, last+1)
	for _, f := range flows {
		net[f.Period] += f.Amount
	}
	i, err := monthlyCost(net, 0.01)
	return annualPercent(i), err
}

// monthlyCost is the i of FullCost over net flows by period (net[q] is the sum in month q).
// guess is a monthly rate near the answer, where the solver starts.
func monthlyCost(net []float64, guess float64) (float64, error) {
	if err := checkSigns(net); err != nil {
		return 0, err
	}
	return solve(net, guess)
}

// annualPercent is ПСК = i · ЧБП · 100, rounded to the 0.001 % of a money.Rate.
func annualPercent(i float64) money.Rate {
	return money.Rate(math.Round(i * periodsPerYear * 100 * 1000))
}

// costAbove reports whether the ПСК of net flows, as annualPercent rounds it, is above c,
// without solving for it: one evaluation of the flows where a solve takes two or three.
// For positive values annualPercent(i) > c exactly when i·1 200 000 ≥ c + ½, i.e. i is at
// or above the monthly rate of c + ½; the flows' value falls as i grows (see FullCost), so
// that is when their value there is ≥ 0. Other flows, or a negative c (whose rounding
// differs), are solved; flows that are not a credit are above any c.
func costAbove(net []float64, c money.Rate) bool {
	if c >= 0 {
		if f, ok := weigh(net, (float64(c)+0.5)/rateScale); ok {
			return f >= 0
		}
	}
	i, err := monthlyCost(net, 0)
	return err != nil || annualPercent(i) > c
}

// costBelow is the mirror of costAbove: for positive values annualPercent(i) < c exactly
// when i is below the monthly rate of c − ½, where the flows' value is then negative. Flows
// that are not a credit report true, so that the caller's solve fails on them.
func costBelow(net []float64, c money.Rate) bool {
	if c > 0 {
		if f, ok := weigh(net, (float64(c)-0.5)/rateScale); ok {
			return f < 0
		}
	}
	i, err := monthlyCost(net, 0)
	return err != nil || annualPercent(i) < c
}

// weigh is presentValue's f alone, and whether the flows are a credit issued at once
// (money out in period 0 alone, some repaid after), which every schedule Price builds is
// and which passes checkSigns: the check rides along in the loop, beside the multiplications
// it would otherwise wait for.
func weigh(net []float64, i float64) (f float64, atOnce bool) {
	if len(net) < 2 || !(net[0] < 0) {
		return 0, false
	}
	v := 1 / (1 + i)
	var p, repaid float64
	negative := false
	for q := len(net) - 1; q > 0; q-- {
		a := net[q]
		negative = negative || a < 0
		repaid += a
		p = p*v + a
	}
	return p*v + net[0], !negative && repaid > 0
}

func checkSigns(net []float64) error {
	issued, repaid := false, false
	for q, a := range net {
		switch {
		case a < 0 && repaid:
			return fmt.Errorf("%w: money issued in period %d after a repayment", ErrNotCredit, q)
		case a < 0:
			issued = true
		case a > 0 && !issued:
			return fmt.Errorf("%w: a repayment in period %d before any issue", ErrNotCredit, q)
		case a > 0:
			repaid = true
		}
	}
	if !issued || !repaid {
		return fmt.Errorf("%w: it needs both an issue and a repayment", ErrNotCredit)
	}
	return nil
}

// presentValue returns f(i) = Σ net[q]·(1+i)^−q and its derivative, by Horner's scheme in
// v = 1/(1+i): one multiplication per period, no powers, no allocation.
func presentValue(net []float64, i float64) (f, df float64) {
	v := 1 / (1 + i)
	var p, dp float64
	for q := len(net) - 1; q >= 0; q-- {
		dp = dp*v + p
		p = p*v + net[q]
	}
	return p, -dp * v * v // d/di p(v) = p'(v) · dv/di, dv/di = −v²
}

// solve finds the root of presentValue for flows that passed checkSigns. It brackets the
// root, lo < root < hi with f(lo) > 0 > f(hi) (f falls as i grows), stepping out from guess
// by doubling steps, then takes Newton steps, falling back to bisection whenever a step
// would leave the bracket: Newton's speed with bisection's guarantee. For a credit issued
// at once (every negative flow in period 0, as in every schedule Price builds) f is also
// convex, so Newton approaches the root from below and every step shrinks the bracket.
func solve(net []float64, guess float64) (float64, error) {
	if !(guess > -1 && guess < maxRate) {
		guess = 0
	}
	if i, ok := newton(net, guess); ok {
		return i, nil
	}
	return bracketed(net, guess)
}

// bracketed is solve without its fast path: Newton inside a bracket, for any flows that
// passed checkSigns.
func bracketed(net []float64, guess float64) (float64, error) {
	lo, hi, err := bracket(net, guess)
	if err != nil || lo == hi {
		return lo, err
	}
	x := guess
	for range 200 { // bisection alone needs under 80 from any bracket bracket() returns
		f, df := presentValue(net, x)
		switch {
		case f == 0:
			return x, nil
		case f > 0:
			lo = x
		default:
			hi = x
		}
		step := f / df
		next := x - step
		if next > lo && next < hi { // also false for the NaN of an overflow near i = −1
			// Newton converges quadratically here: the error after a step of dx is about
			// (f''/2f')·dx². For a credit issued at once |f''/f'| ≤ (periods+1)/(1+i), a few
			// thousand at most, so a step under newtonDone leaves an error near 1e-17, far
			// inside tolerance.
			if math.Abs(step) <= newtonDone {
				return next, nil
			}
		} else {
			next = lo + (hi-lo)/2
			if hi-lo <= tolerance {
				return next, nil
			}
		}
		x = next
	}
	return 0, fmt.Errorf("full cost: solver did not converge in bracket [%g, %g]", lo, hi)
}

// newton is solve's fast path, for a credit issued at once (every negative flow in period
// 0, as in every schedule Price builds). Then f is a constant plus a positive sum of the
// convex, falling (1+i)^−q: convex and falling for i > −1. Newton's steps from below the
// root rise to it without passing it, and a step from above lands at or below it, so no
// bracket is needed: from a guess near the root (the previous term's, in costRange) it
// takes two or three evaluations where bracketing first took two more. It stops on the same
// step size as solve, whose comment says why that is exact enough. ok is false, for the
// bracketing solver to take over, when the flows are not issued at once, a step leaves
// (−1, maxRate), or it has not converged within a few dozen steps.
func newton(net []float64, x float64) (float64, bool) {
	for _, a := range net[1:] {
		if a < 0 {
			return 0, false
		}
	}
	for range 40 {
		f, df := presentValue(net, x)
		if f == 0 {
			return x, true
		}
		if !(df < 0) { // falling everywhere; also false for a NaN
			return 0, false
		}
		step := f / df
		next := x - step
		if !(next > -1 && next < maxRate) {
			return 0, false
		}
		if math.Abs(step) <= newtonDone {
			return next, true
		}
		x = next
	}
	return 0, false
}

// bracket returns lo < hi with f(lo) > 0 > f(hi), or lo == hi at a root it happened on.
// The steps start at 1 % a month and double, so a guess near the root costs one or two
// evaluations and a poor one a few more.
func bracket(net []float64, guess float64) (lo, hi float64, err error) {
	f, _ := presentValue(net, guess)
	if f == 0 {
		return guess, guess, nil
	}
	step := 0.01
	if f > 0 { // the root is above guess
		lo = guess
		for {
			hi = lo + step
			if hi > maxRate {
				return 0, 0, fmt.Errorf("%w: no monthly rate up to %g zeroes the flows", ErrNotCredit, maxRate)
			}
			f, _ := presentValue(net, hi)
			if f < 0 {
				return lo, hi, nil
			}
			if f == 0 {
				return hi, hi, nil
			}
			lo, step = hi, step*2
		}
	}
	hi = guess // the root is below guess, and above −1
	for range 200 {
		lo = max(hi-step, (hi-1)/2) // never past half-way to −1
		f, _ := presentValue(net, lo)
		if f > 0 {
			return lo, hi, nil
		}
		if f == 0 {
			return lo, lo, nil
		}
		hi, step = lo, step*2
	}
	return 0, 0, fmt.Errorf("%w: no monthly rate above −1 zeroes the flows", ErrNotCredit)
}
