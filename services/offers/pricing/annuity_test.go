package pricing

import (
	"math/rand/v2"
	"testing"

	"github.com/demobank/yacredits/pkg/money"
)

// Every expected value can be recomputed exactly with python3:
//
//	from fractions import Fraction as F
//	pay = lambda P, R, n: int(P*F(R, 1200000)/(1-(1+F(R, 1200000))**-n) + F(1, 2))
//
// with P in kopecks and R in thousandths of a percent; pay(10000000, 12000, 12) == 888488.
func TestAnnuityPayment(t *testing.T) {
	tests := []struct {
		name      string
		principal money.Amount
		rate      money.Rate
		months    int
		want      money.Amount
	}{
		// The textbook case: r = 1 % a month, 1.01^12 = 1.12682503, 1 − 1/1.12682503 =
		// 0.11255077, 1 000 / 0.11255077 = 8 884.8789 → 8 884.88.
		{"100 000 at 12 % for 12", money.Roubles(100_000), money.Percent(12), 12, 888_488},
		// The spec's example request: exact value 18 556.32514… → 18 556.33.
		{"500 000 at 19.9 % for 36", money.Roubles(500_000), 19_900, 36, 1_855_633},
		{"30 000 at 19.9 % for 12", money.Roubles(30_000), 19_900, 12, 277_760},          // 2 777.59958…
		{"30 000 at 21.9 % for 60", money.Roubles(30_000), 21_900, 60, 82_686},           // 826.86256…
		{"1 000 000 at 24.9 % for 12", money.Roubles(1_000_000), 24_900, 12, 9_499_568},  // 94 995.68275…
		{"5 000 000 at 29.9 % for 60", money.Roubles(5_000_000), 29_900, 60, 16_146_000}, // 161 459.99590…
		{"one month is principal plus interest", money.Roubles(1_200), money.Percent(12), 1, money.Roubles(1_212)},
		// Zero rate: P/n, half-up.
		{"interest-free", money.Roubles(1_000_000), 0, 12, 8_333_333}, // 83 333.333…
		{"interest-free, half kopeck", 5, 0, 2, 3},                    // 2.5 kopecks → 3
		// Exact half kopecks with interest, where the float path cannot be trusted to round:
		// r = 600/1200 = 0.5 a month. 1 kopeck for 1 month: 1·1.5 = 1.5 → 2. 3 kopecks: 4.5 → 5.
		// 5 kopecks for 2 months: 5·0.5/(1 − 1/2.25) = 2.5/0.5556 = 4.5 → 5.
		{"tie, 1 kopeck", 1, money.Percent(600), 1, 2},
		{"tie, 3 kopecks", 3, money.Percent(600), 1, 5},
		{"tie, two months", 5, money.Percent(600), 2, 5},
		{"no principal", 0, money.Percent(12), 12, 0},
		{"no term", money.Roubles(100_000), money.Percent(12), 0, 0},
		{"negative rate", money.Roubles(100_000), -1, 12, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AnnuityPayment(tt.principal, tt.rate, tt.months); got != tt.want {
				t.Errorf("AnnuityPayment(%s, %s, %d) = %s; want %s", tt.principal, tt.rate, tt.months, got, tt.want)
			}
		})
	}
}

// TestAnnuityFastPathIsExact proves the float64 path on the inputs that matter: every
// rounded payment equals the one computed in exact integer arithmetic.
func TestAnnuityFastPathIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		p := money.Amount(1 + rng.Int64N(int64(money.Roubles(100_000_000))))
		r := money.Rate(1 + rng.Int64N(int64(money.Percent(100))))
		n := 1 + rng.IntN(360)
		if got, want := AnnuityPayment(p, r, n), annuityExact(p, r, n); got != want {
			t.Fatalf("AnnuityPayment(%s, %s, %d) = %s; exact %s", p, r, n, got, want)
		}
	}
}

// TestAnnuityMonotone checks what Price relies on for the payment's extremes: the payment
// never falls when the amount or the rate grows, and never grows when the term does.
// Rounding to kopecks makes these non-strict, so a doubled amount checks it moves at all.
func TestAnnuityMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10_000 {
		p := money.Amount(10_000 + rng.Int64N(int64(money.Roubles(10_000_000))))
		r := money.Rate(rng.Int64N(int64(money.Percent(60))))
		n := 1 + rng.IntN(359)
		base := AnnuityPayment(p, r, n)
		dp := money.Amount(1 + rng.Int64N(int64(p)))
		dr := money.Rate(1 + rng.Int64N(int64(money.Percent(5))))
		if more := AnnuityPayment(p+dp, r, n); more < base {
			t.Fatalf("payment fell with amount: (%s, %s, %d) = %s, amount +%s = %s", p, r, n, base, dp, more)
		}
		if more := AnnuityPayment(p, r+dr, n); more < base {
			t.Fatalf("payment fell with rate: (%s, %s, %d) = %s, rate +%s = %s", p, r, n, base, dr, more)
		}
		if less := AnnuityPayment(p, r, n+1); less > base {
			t.Fatalf("payment grew with term: (%s, %s, %d) = %s, term +1 = %s", p, r, n, base, less)
		}
		if double := AnnuityPayment(2*p, r, n); double <= base { // exact payments ≥ 27 kopecks: doubling shows
			t.Fatalf("payment did not grow with a doubled amount: (%s, %s, %d) = %s, doubled %s", p, r, n, base, double)
		}
	}
}
