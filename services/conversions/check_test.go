package conversions

import (
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
)

const testSearchID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

// issued is when the test offers were made: 00:30 on 1 December in Moscow, still 30 November
// in UTC, so that a date taken in the wrong zone is caught.
var issued = time.Date(2026, 11, 30, 21, 30, 0, 0, time.UTC)

func loanClaims() offerlink.Claims {
	return offerlink.Claims{Issuer: "demobank", IssuedAt: issued.Unix(), Expiry: issued.Add(7 * 24 * time.Hour).Unix(),
		SearchID: testSearchID, Offer: "cash-standard", ProductType: contracts.ProductLoan, Decision: contracts.PreApproved,
		Amount: contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)},
		Term:   &contracts.TermRange{Min: 12, Max: 60}, Rate: contracts.RateRange{Min: 19_900, Max: 27_900}}
}

func cardClaims() offerlink.Claims {
	c := loanClaims()
	c.Offer, c.ProductType, c.Term = "card-120", contracts.ProductCreditCard, nil
	return c
}

func amount(roubles int64) *money.Amount { a := money.Roubles(roubles); return &a }
func ptr[T any](v T) *T                  { return &v }

const window = 30 * 24 * time.Hour

// A contract may be dated up to the reporting window after its link's expiry (the offers'
// expire at 00:30 on 8 December, Moscow: 7 January with the window, 6 January in UTC), and not
// a day later: that one is refused for good.
func TestCheckReportingWindow(t *testing.T) {
	now := time.Date(2027, 2, 1, 10, 0, 0, 0, time.UTC)
	for date, want := range map[string]string{"2026-12-20": "", "2027-01-07": "", "2027-01-08": ReasonTooLate, "2027-01-31": ReasonTooLate} {
		r := Report{ContractDate: date, Amount: amount(300_000), Term: ptr(24), AdditionalServices: ptr(true)}
		offered := loanClaims()
		_, problems := Check(r, &offered, window, now)
		got := ""
		if len(problems) == 1 {
			got = problems[0].Reason
		}
		if got != want || (want == "") != (problems == nil) {
			t.Errorf("contract of %s: problems %+v, want reason %q", date, problems, want)
		}
	}
}

func TestCheck(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	good := Report{ContractDate: "2026-12-02", Amount: amount(300_000), Term: ptr(24), AdditionalServices: ptr(true)}
	edit := func(f func(*Report)) Report { r := good; f(&r); return r }
	tests := []struct {
		name    string
		report  Report
		offered offerlink.Claims
		want    []string // "field: part of the message"
	}{
		{"good loan", good, loanClaims(), nil},
		{"good card", Report{ContractDate: "2026-12-03", Amount: amount(120_000), AdditionalServices: ptr(false)}, cardClaims(), nil},
		{"the edges of the offer", edit(func(r *Report) { r.Amount, r.Term = amount(1_000_000), ptr(12) }), loanClaims(), nil},
		{"signed on the search's day (Moscow)", edit(func(r *Report) { r.ContractDate = "2026-12-01" }), loanClaims(), nil},
		{"the day before the search (Moscow), its day in UTC", edit(func(r *Report) { r.ContractDate = "2026-11-30" }), loanClaims(),
			[]string{"contract_date: 2026-11-30 is before the search"}},
		{"tomorrow", edit(func(r *Report) { r.ContractDate = "2026-12-04" }), loanClaims(),
			[]string{"contract_date: 2026-12-04 is in the future"}},
		{"not a date", edit(func(r *Report) { r.ContractDate = "02.12.2026" }), loanClaims(),
			[]string{`contract_date: "02.12.2026" is not a date`}},
		{"a kopeck over", edit(func(r *Report) { a := money.Roubles(1_000_000) + 1; r.Amount = &a }), loanClaims(),
			[]string{"amount: 1000000.01 is outside the offered 30000–1000000"}},
		{"term too long", edit(func(r *Report) { r.Term = ptr(61) }), loanClaims(),
			[]string{"term: 61 months is outside the offered 12–60"}},
		{"a card with a term", edit(func(r *Report) { r.Amount = amount(100_000) }), cardClaims(),
			[]string{"term: a credit card has no term"}},
		{"everything missing, every problem named", Report{}, loanClaims(), []string{
			"contract_date: required", "amount: required", "term: required", "additional_services: required"}},
		{"a zero amount and a negative term", edit(func(r *Report) { r.Amount, r.Term = amount(0), ptr(-3) }), loanClaims(),
			[]string{"amount: 0 is not a positive amount", "term: -3 is not a number of months"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offered := tt.offered
			c, problems := Check(tt.report, &offered, window, now)
			var got []string
			for _, p := range problems {
				got = append(got, p.Field+": "+p.Message)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Fatalf("problem %d: %q, want %q…", i, got[i], tt.want[i])
				}
			}
			if problems != nil {
				return
			}
			if c.ID != testSearchID+"."+tt.offered.Offer || c.State != contracts.ConversionQueued ||
				c.Amount != *tt.report.Amount || c.Offered.Amount != tt.offered.Amount || !c.ReportedAt.Equal(now) {
				t.Fatalf("conversion %+v", c)
			}
		})
	}
}

// With the offer unknown (a bad token, which the intake reports), the report's own fields
// are still checked, so that one answer names every problem.
func TestCheckWithoutTheOffer(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	_, problems := Check(Report{ContractDate: "2026-12-09", Term: ptr(24)}, nil, window, now)
	var got []string
	for _, p := range problems {
		got = append(got, p.Field)
	}
	if strings.Join(got, ",") != "contract_date,amount,additional_services" {
		t.Fatalf("problems %+v", problems)
	}
}
