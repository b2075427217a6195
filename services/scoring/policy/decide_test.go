package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// testPolicy is default.json with edits applied as string replacements, so that each
// variant differs from the shipped file in one visible way.
func testPolicy(t testing.TB, edits ...string) *Policy {
	t.Helper()
	s := string(defaultJSON)
	for i := 0; i < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("edit %q does not apply", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	msk = time.FixedZone("MSK", 3*60*60)
	now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
)

func record(p contracts.ProductType, k contracts.OfferDecision, roubles int64, grade string, until time.Time) *preapproval.Record {
	return &preapproval.Record{Hash: [32]byte{1}, Product: p, Kind: k, Limit: money.Roubles(roubles), Grade: grade, ValidUntil: until}
}

func request(p contracts.ProductType, roubles int64, term int) contracts.LoanRequested {
	r := contracts.LoanRequested{
		SearchID:    "e2b4948b-7d8a-4eec-875c-b1c11d7d8372",
		PhoneHash:   strings.Repeat("ab", 32),
		PhoneMasked: "+7933***5040",
		ProductType: p,
		RequestedAt: now.Add(-time.Second),
		Deadline:    now.Add(9 * time.Second),
	}
	if roubles > 0 {
		a := money.Roubles(roubles)
		r.Amount = &a
	}
	if term > 0 {
		r.Term = &term
	}
	return r
}

func amounts(lo, hi int64) *contracts.AmountRange {
	return &contracts.AmountRange{Min: money.Roubles(lo), Max: money.Roubles(hi)}
}

func TestDecide(t *testing.T) {
	const (
		loan = contracts.ProductLoan
		card = contracts.ProductCreditCard
		pre  = contracts.PreApproved
		full = contracts.FullApproved
	)
	base := testPolicy(t)
	strict := testPolicy(t, `"over_limit": "offer_limit"`, `"over_limit": "reject"`)
	generous := testPolicy(t,
		`"no_preapproval": {"action": "reject"}`, `"no_preapproval": {"action": "offer", "grade": "C", "limit": 50000}`,
		`"expired": {"action": "reject"}`, `"expired": {"action": "offer", "grade": "C", "limit": 40000}`)
	loansOnly := &Policy{Loan: base.Loan}

	valid := time.Date(2026, 12, 31, 0, 0, 0, 0, msk)
	lapsed := time.Date(2026, 11, 22, 0, 0, 0, 0, msk) // through 22 Nov, Moscow; now is 23 Nov
	loanTerm := &contracts.TermRange{Min: 12, Max: 60}

	tests := []struct {
		name       string
		policy     *Policy
		rec        *preapproval.Record
		req        contracts.LoanRequested
		now        time.Time
		verdict    contracts.Verdict
		reasons    string // comma-separated
		kind       contracts.OfferDecision
		grade      string
		wantAmount *contracts.AmountRange
		wantTerm   *contracts.TermRange
	}{
		{"the spec's example request", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 500_000, 36), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"no amount, no term", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 0, 0), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"full approval carries its kind", base, record(loan, full, 200_000, "B", valid), request(loan, 0, 0), now,
			contracts.Approved, "approved", full, "B", amounts(30_000, 200_000), loanTerm},
		{"card: no term range", base, record(card, full, 300_000, "B", valid), request(card, 100_000, 0), now,
			contracts.Approved, "approved", full, "B", amounts(10_000, 300_000), nil},
		{"card: a requested term is ignored", base, record(card, pre, 300_000, "B", valid), request(card, 0, 500), now,
			contracts.Approved, "approved", pre, "B", amounts(10_000, 300_000), nil},
		{"the grade's max_limit caps the limit", base, record(loan, pre, 4_000_000, "C", valid), request(loan, 0, 0), now,
			contracts.Approved, "approved", pre, "C", amounts(30_000, 1_000_000), loanTerm},
		{"the product's max_amount caps the limit", base, record(loan, pre, 9_000_000, "A", valid), request(loan, 0, 0), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 5_000_000), loanTerm},
		{"amount at the limit", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 1_000_000, 0), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"amount over the limit: offer the limit", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 1_500_000, 0), now,
			contracts.Approved, "amount_over_limit,approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"amount over the grade's cap: offer the cap", base, record(loan, pre, 4_000_000, "C", valid), request(loan, 2_000_000, 0), now,
			contracts.Approved, "amount_over_limit,approved", pre, "C", amounts(30_000, 1_000_000), loanTerm},
		{"amount over the limit: reject", strict, record(loan, pre, 1_000_000, "A", valid), request(loan, 1_500_000, 0), now,
			contracts.Declined, "amount_over_limit", "", "A", nil, nil},
		{"amount within the limit under reject", strict, record(loan, pre, 1_000_000, "A", valid), request(loan, 999_999, 0), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"amount below the minimum", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 5_000, 0), now,
			contracts.Approved, "amount_below_minimum,approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"term below the bounds", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 0, 11), now,
			contracts.Approved, "term_out_of_bounds,approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"term above the bounds", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 0, 61), now,
			contracts.Approved, "term_out_of_bounds,approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"term at the bounds", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 0, 60), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"over the limit and out of bounds", base, record(loan, pre, 1_000_000, "A", valid), request(loan, 2_000_000, 120), now,
			contracts.Approved, "amount_over_limit,term_out_of_bounds,approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"no pre-approval: reject", base, nil, request(loan, 100_000, 12), now,
			contracts.Declined, "no_preapproval", "", "", nil, nil},
		{"no pre-approval: offer", generous, nil, request(loan, 0, 12), now,
			contracts.Approved, "no_preapproval,approved", pre, "C", amounts(30_000, 50_000), loanTerm},
		{"no pre-approval: offer, amount over it", generous, nil, request(loan, 100_000, 12), now,
			contracts.Approved, "no_preapproval,amount_over_limit,approved", pre, "C", amounts(30_000, 50_000), loanTerm},
		{"a record for the other product counts as none", base, record(card, pre, 300_000, "A", valid), request(loan, 0, 0), now,
			contracts.Declined, "no_preapproval", "", "", nil, nil},
		{"expired: reject", base, record(loan, full, 1_000_000, "A", lapsed), request(loan, 0, 0), now,
			contracts.Declined, "expired", "", "A", nil, nil},
		{"expired: offer the fallback, pre-approved", generous, record(loan, full, 1_000_000, "A", lapsed), request(loan, 0, 0), now,
			contracts.Approved, "expired,approved", pre, "C", amounts(30_000, 40_000), loanTerm},
		{"last second of the last day, Moscow", base, record(loan, pre, 1_000_000, "A", lapsed), request(loan, 0, 0),
			time.Date(2026, 11, 22, 23, 59, 59, 0, msk),
			contracts.Approved, "approved", pre, "A", amounts(30_000, 1_000_000), loanTerm},
		{"first second of the next day, Moscow", base, record(loan, pre, 1_000_000, "A", lapsed), request(loan, 0, 0),
			time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC),
			contracts.Declined, "expired", "", "A", nil, nil},
		{"grade not accepted", base, record(loan, pre, 1_000_000, "D", valid), request(loan, 0, 0), now,
			contracts.Declined, "grade_not_accepted", "", "D", nil, nil},
		{"grades are case-sensitive", base, record(loan, pre, 1_000_000, "a", valid), request(loan, 0, 0), now,
			contracts.Declined, "grade_not_accepted", "", "a", nil, nil},
		{"limit below the minimum", base, record(loan, pre, 20_000, "A", valid), request(loan, 0, 0), now,
			contracts.Declined, "limit_below_minimum", "", "A", nil, nil},
		{"limit at the minimum", base, record(loan, pre, 30_000, "A", valid), request(loan, 0, 0), now,
			contracts.Approved, "approved", pre, "A", amounts(30_000, 30_000), loanTerm},
		{"product not offered", loansOnly, record(card, pre, 300_000, "A", valid), request(card, 0, 0), now,
			contracts.Declined, "product_not_offered", "", "", nil, nil},
		{"no policy at all", nil, record(loan, pre, 300_000, "A", valid), request(loan, 0, 0), now,
			contracts.Declined, "product_not_offered", "", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.policy, tt.rec, tt.req, tt.now)
			if got.Verdict != tt.verdict || strings.Join(got.Reasons, ",") != tt.reasons {
				t.Errorf("verdict %s, reasons %v; want %s, %s", got.Verdict, got.Reasons, tt.verdict, tt.reasons)
			}
			if got.Kind != tt.kind || got.Grade != tt.grade {
				t.Errorf("kind %q, grade %q; want %q, %q", got.Kind, got.Grade, tt.kind, tt.grade)
			}
			if !reflect.DeepEqual(got.Amount, tt.wantAmount) || !reflect.DeepEqual(got.Term, tt.wantTerm) {
				t.Errorf("amount %+v, term %+v; want %+v, %+v", got.Amount, got.Term, tt.wantAmount, tt.wantTerm)
			}
			if !reflect.DeepEqual(got.Request, tt.req) || !got.ScoredAt.Equal(tt.now) {
				t.Errorf("request or scored_at not carried: %+v", got)
			}
			if _, err := contracts.NewScored(got); err != nil {
				t.Errorf("NewScored refuses the decision: %v", err)
			}
		})
	}
}

// TestDecideDoesNotShareTheTermRange guards the policy: a caller editing one decision's
// term range must not edit the policy's.
func TestDecideDoesNotShareTheTermRange(t *testing.T) {
	p := Default()
	until := time.Date(2026, 12, 31, 0, 0, 0, 0, msk)
	s := Decide(p, record(contracts.ProductLoan, contracts.PreApproved, 100_000, "A", until), request(contracts.ProductLoan, 0, 0), now)
	s.Term.Max = 1
	if p.Loan.Term.Max != 60 {
		t.Fatal("the decision's term range is the policy's")
	}
}

// A proposal link must not outlive the pre-approval it came from: the verdict says when that
// lapses (the first instant after valid_until's day in Moscow), and only an approval made
// from a pre-approval has such a bound.
func TestDecideCarriesTheValidity(t *testing.T) {
	p := Default()
	until := time.Date(2026, 12, 31, 0, 0, 0, 0, msk)
	s := Decide(p, record(contracts.ProductLoan, contracts.PreApproved, 100_000, "A", until), request(contracts.ProductLoan, 0, 0), now)
	if want := time.Date(2027, 1, 1, 0, 0, 0, 0, msk); s.ValidUntil == nil || !s.ValidUntil.Equal(want) {
		t.Fatalf("ValidUntil = %v, want %s", s.ValidUntil, want)
	}
	fallback := testPolicy(t, `"no_preapproval": {"action": "reject"}`, `"no_preapproval": {"action": "offer", "grade": "C", "limit": 50000}`)
	s = Decide(fallback, nil, request(contracts.ProductLoan, 0, 0), now)
	if s.Verdict != contracts.Approved || s.ValidUntil != nil {
		t.Fatalf("a fallback approval: %s, ValidUntil %v, want approved with none", s.Verdict, s.ValidUntil)
	}
}

func TestDefault(t *testing.T) {
	p := Default()
	if p.Loan == nil || p.CreditCard == nil || p.Loan.NoPreapproval.Action != Reject || p.Loan.Expired.Action != Reject {
		t.Fatalf("default policy %+v", p)
	}
	// The spec's demo: 9330445040 is pre-approved for both products and the example request
	// (loan, 500000.00, 36 months) is approved; 9001112233 is unknown and rejected.
	until := time.Date(2026, 12, 31, 0, 0, 0, 0, msk)
	demo := record(contracts.ProductLoan, contracts.PreApproved, 1_000_000, "A", until)
	if s := Decide(p, demo, request(contracts.ProductLoan, 500_000, 36), now); s.Verdict != contracts.Approved {
		t.Errorf("the spec's example is %s: %v", s.Verdict, s.Reasons)
	}
	if s := Decide(p, nil, request(contracts.ProductLoan, 500_000, 36), now); s.Verdict != contracts.Declined {
		t.Errorf("an unknown client is %s", s.Verdict)
	}
	p.Loan.Grades["Z"] = Grade{MaxLimit: 1}
	if _, ok := Default().Loan.Grades["Z"]; ok {
		t.Error("Default shares its maps between callers")
	}
}
