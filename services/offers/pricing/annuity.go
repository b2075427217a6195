package pricing

import (
	"math"
	"math/big"

	"github.com/demobank/yacredits/pkg/money"
)

// rateScale is a money.Rate of 100 % a year spread over 12 months: the monthly rate as a
// fraction is rate / rateScale (19.9 % → 19900 / 1 200 000 = 0.0165833…).
const rateScale = 1_200_000

// AnnuityPayment is the equal monthly payment that repays principal with interest at the
// nominal annual rate over months: P·r / (1 − (1+r)^−n) with r = rate/12/100, rounded
// half-up to kopecks. A zero rate gives P/n. It returns 0 for a principal or term that is
// not positive or a negative rate, which no valid catalog produces.
//
// The result is exact: the value is computed in float64, whose error on this formula is a
// few ulps (about 1e-15 relative, so 1e-5 kopecks on a payment of 100 million roubles), and
// only when that value lies so near a half kopeck that such an error could change the
// rounding is it recomputed in integers with math/big. TestAnnuityFastPathIsExact checks
// the two paths agree on many generated inputs.
func AnnuityPayment(principal money.Amount, rate money.Rate, months int) money.Amount {
	if principal <= 0 || months < 1 || rate < 0 {
		return 0
	}
	if rate == 0 {
		n := money.Amount(months)
		return (2*principal + n) / (2 * n) // P/n, half-up
	}
	x := annuity(float64(principal), rate, months)
	// 1e-12 relative is some 400 ulps: far outside the formula's error, yet a window so
	// narrow that the exact path is taken about once in a million for ordinary loans.
	// Above 5e11 kopecks the window covers every value, so huge amounts go exact too.
	if math.Abs(x-math.Floor(x)-0.5) <= 1e-12*x {
		return annuityExact(principal, rate, months)
	}
	return money.Amount(math.Floor(x + 0.5))
}

// annuity is the unrounded payment, in the unit of principal. The term (1+r)^−n is formed
// as exp(−n·log1p(r)) and subtracted from one with expm1, so that small rates and long terms
// lose no digits to cancellation.
func annuity(principal float64, rate money.Rate, months int) float64 {
	if rate == 0 {
		return principal / float64(months)
	}
	r := float64(rate) / rateScale
	return principal * r / -math.Expm1(-float64(months)*math.Log1p(r))
}

// annuityExact rounds the payment half-up from exact integers. With a = 1 200 000 + rate and
// b = 1 200 000, (1+r) = a/b and the payment is P·rate·aⁿ / (b·(aⁿ − bⁿ)).
func annuityExact(principal money.Amount, rate money.Rate, months int) money.Amount {
	b := big.NewInt(rateScale)
	a := big.NewInt(rateScale + int64(rate))
	n := big.NewInt(int64(months))
	an := new(big.Int).Exp(a, n, nil)
	bn := new(big.Int).Exp(b, n, nil)
	num := new(big.Int).Mul(big.NewInt(int64(principal)), big.NewInt(int64(rate)))
	num.Mul(num, an)
	den := new(big.Int).Sub(an, bn)
	den.Mul(den, b)
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	if m.Lsh(m, 1).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	return money.Amount(q.Int64())
}
