package ceiling

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

func table(quarters string) []byte {
	return []byte(`{"version": 1, "quarters": [` + quarters + `]}`)
}

const q1 = `{"quarter": "2027-Q1", "source": "test", "categories": [
	{"row": "1", "product_type": "credit_card", "amount_over": 0, "amount_up_to": 30000, "average": 48.123, "limit": 64.164},
	{"row": "2", "product_type": "credit_card", "amount_over": 30000, "amount_up_to": 0, "average": 30, "limit": 40}]}`

const q4 = `{"quarter": "2026-Q4", "source": "test", "categories": [
	{"row": "1", "product_type": "credit_card", "amount_over": 0, "amount_up_to": 0, "average": 45, "limit": 60}]}`

// The shipped table parses; a table's problems are all reported, each naming where.
func TestParse(t *testing.T) {
	if _, err := Parse(DefaultJSON()); err != nil {
		t.Fatalf("default.json: %v", err)
	}
	tests := []struct {
		name, data, want string
	}{
		{"limit not the average plus a third", `{"quarter": "2027-Q1", "source": "s", "categories": [
			{"row": "1", "product_type": "credit_card", "average": 48.123, "limit": 64.166}]}`,
			`limit 64.166 is not the average 48.123 plus one third (64.164)`},
		{"a gap between bands", `{"quarter": "2027-Q1", "source": "s", "categories": [
			{"row": "1", "product_type": "credit_card", "amount_up_to": 30000, "average": 30, "limit": 40},
			{"row": "2", "product_type": "credit_card", "amount_over": 40000, "average": 30, "limit": 40}]}`,
			`credit_card at 30000.01 ₽ falls in 0 categories`},
		{"overlapping bands", `{"quarter": "2027-Q1", "source": "s", "categories": [
			{"row": "1", "product_type": "credit_card", "amount_up_to": 30000, "average": 30, "limit": 40},
			{"row": "2", "product_type": "credit_card", "amount_over": 20000, "average": 30, "limit": 40}]}`,
			`credit_card at 20000.01 ₽ falls in 2 categories [1 2]`},
		{"a loan term not covered", `{"quarter": "2027-Q1", "source": "s", "categories": [
			{"row": "1", "product_type": "loan", "term_up_to": 12, "average": 30, "limit": 40}]}`,
			`loan at 0.01 ₽ for 13 months falls in 0 categories`},
		{"no source", `{"quarter": "2027-Q1", "source": "", "categories": []}`, `source is empty`},
		{"a bad quarter", `{"quarter": "2027-Q5", "source": "s", "categories": []}`, `quarter "2027-Q5" is not YEAR-Qn`},
		{"a quarter twice", q1 + "," + q1, `quarter 2027-Q1 listed twice`},
		{"a suspended category with a limit", `{"quarter": "2027-Q1", "source": "s", "categories": [
			{"row": "1", "product_type": "credit_card", "suspended": true, "average": 30, "limit": 40}]}`,
			`a suspended category has no average or limit`},
		{"an unknown field", `{"quarter": "2027-Q1", "source": "s", "categories": [], "note": 1}`, `not a ceiling table`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(table(tt.data))
			var invalid *InvalidError
			if !errors.As(err, &invalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want a problem with %q", err, tt.want)
			}
		})
	}
}

// A link made late in a quarter can be followed in the next: both quarters' values apply,
// the lower winning, at each band's edges; a quarter the table lacks adds only 292 %.
func TestBetween(t *testing.T) {
	tab, err := Parse(table(q1 + "," + q4))
	if err != nil {
		t.Fatal(err)
	}
	card := contracts.ProductCreditCard
	msk := time.FixedZone("MSK", 3*60*60)
	late := time.Date(2026, 12, 28, 12, 0, 0, 0, msk)
	tests := []struct {
		name     string
		from, to time.Time
		amount   money.Amount
		want     money.Rate
		quarters string
	}{
		{"Q4 alone", late.AddDate(0, -1, 0), late.AddDate(0, -1, 7), money.Roubles(30_000), money.Percent(60), "2026-Q4"},
		{"into Q1, up to 30 000 ₽: Q4's 60 < Q1's 64.164", late, late.AddDate(0, 0, 7), money.Roubles(30_000), money.Percent(60), "2026-Q4,2027-Q1"},
		{"into Q1, 30 000.01 ₽: Q1's 40", late, late.AddDate(0, 0, 7), money.Roubles(30_000) + 1, money.Percent(40), "2026-Q4,2027-Q1"},
		{"Q1 from its first instant (Moscow time)", time.Date(2027, 1, 1, 0, 0, 0, 0, msk), time.Date(2027, 1, 1, 0, 0, 0, 0, msk), money.Roubles(10_000), 64_164, "2027-Q1"},
		{"a link that expires as Q1 starts is Q4's alone", late, time.Date(2027, 1, 1, 0, 0, 0, 0, msk), money.Roubles(30_000) + 1, money.Percent(60), "2026-Q4"},
		{"the instant before is Q4's", time.Date(2027, 1, 1, 0, 0, 0, 0, msk).Add(-time.Second), time.Date(2027, 1, 1, 0, 0, 0, 0, msk).Add(-time.Second), money.Roubles(10_000), money.Percent(60), "2026-Q4"},
		{"a quarter not in the table: 292 %", time.Date(2027, 5, 1, 0, 0, 0, 0, msk), time.Date(2027, 5, 8, 0, 0, 0, 0, msk), money.Roubles(10_000), Absolute, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tab.Between(tt.from, tt.to)
			if got := l.At(card, tt.amount, 12); got != tt.want {
				t.Errorf("At(%s ₽) = %s, want %s", tt.amount, got, tt.want)
			}
			if got := strings.Join(l.Quarters(), ","); got != tt.quarters {
				t.Errorf("quarters %q, want %q", got, tt.quarters)
			}
		})
	}
	var none *Table
	if got := none.Between(late, late).At(card, 1, 12); got != Absolute {
		t.Errorf("no table: %s, want %s", got, Absolute)
	}
}

// A category the board suspended for a quarter leaves 292 % alone there, and the other
// categories of the quarter still apply.
func TestSuspendedCategory(t *testing.T) {
	tab, err := Parse(table(`{"quarter": "2025-Q1", "source": "test", "categories": [
		{"row": "1", "product_type": "credit_card", "amount_up_to": 30000, "suspended": true},
		{"row": "2", "product_type": "credit_card", "amount_over": 30000, "average": 30, "limit": 40}]}`))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	l := tab.Between(at, at)
	if got := l.At(contracts.ProductCreditCard, money.Roubles(30_000), 12); got != Absolute {
		t.Errorf("suspended: %s, want %s", got, Absolute)
	}
	if got := l.At(contracts.ProductCreditCard, money.Roubles(30_000)+1, 12); got != money.Percent(40) {
		t.Errorf("the next band: %s, want 40", got)
	}
}
