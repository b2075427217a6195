package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// minimal is the smallest valid loan-only policy; cases edit it.
const minimal = `{"version": 1, "products": {"loan": {
	"min_amount": 30000, "max_amount": 500000, "term": {"min": 3, "max": 60},
	"over_limit": "reject", "grades": {"A": {"max_limit": 500000}}}}}`

// loanWith is a policy whose loan has the given fields after min/max amounts and grades.
func loanWith(fields string) string {
	return `{"version": 1, "products": {"loan": {"min_amount": 30000, "max_amount": 500000,
		"over_limit": "reject", "grades": {"A": {"max_limit": 500000}}` + fields + `}}}`
}

func cardWith(fields string) string {
	return `{"version": 1, "products": {"credit_card": {"min_amount": 10000, "max_amount": 500000,
		"over_limit": "reject", "grades": {"A": {"max_limit": 500000}}` + fields + `}}}`
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", " \n", []string{"the file is empty"}},
		{"bad JSON", "{\n  \"version\": 1,}", []string{"invalid JSON at line 2, column 15: invalid character ',' at start of value"}},
		{"cut short", `{"version": 1`, []string{"invalid JSON: the file ends too soon"}},
		{"two objects", `{} {}`, []string{"invalid JSON: data after the policy object"}},
		{"not an object", `[1]`, []string{"want an object"}},
		{"nothing", `{}`, []string{"version: required", "products: required"}},
		{"version", strings.Replace(minimal, `"version": 1`, `"version": 2`, 1), []string{"version: version 2 is not supported, want 1"}},
		{"version as a string", strings.Replace(minimal, `"version": 1`, `"version": "1"`, 1), []string{"version: want a whole number"}},
		{"no product", `{"version": 1, "products": {}}`, []string{"products: name at least one of loan and credit_card"}},
		{"unknown product", `{"version": 1, "products": {"mortgage": {}}}`,
			[]string{"products.mortgage: unknown field", "products: name at least one of loan and credit_card"}},
		{"unknown field", strings.Replace(minimal, `"over_limit"`, `"overlimit": 1, "over_limit"`, 1), []string{"products.loan.overlimit: unknown field"}},
		{"repeated field", strings.Replace(minimal, `"over_limit": "reject"`, `"over_limit": "reject", "over_limit": "offer_limit"`, 1),
			[]string{`invalid JSON at line 3, column 26: duplicate object member name "over_limit" within "/products/loan"`}},
		{"invalid UTF-8", strings.Replace(minimal, `"over_limit": "reject"`, "\"over_limit\": \"re\xffject\"", 1),
			[]string{`invalid JSON at line 3, column 19: invalid UTF-8 within "/products/loan/over_limit"`}},
		{"product not an object", `{"version": 1, "products": {"loan": null}}`, []string{"products.loan: want an object"}},
		{"product missing everything", `{"version": 1, "products": {"loan": {}}}`, []string{
			"products.loan.min_amount: required", "products.loan.max_amount: required", "products.loan.over_limit: required",
			"products.loan.grades: required", "products.loan.term: required"}},
		{"amount as a string", strings.Replace(minimal, `"min_amount": 30000`, `"min_amount": "30000"`, 1),
			[]string{"products.loan.min_amount: want a number of roubles"}},
		{"negative amount", strings.Replace(minimal, `"min_amount": 30000`, `"min_amount": -5`, 1),
			[]string{"products.loan.min_amount: want roubles above zero with at most 2 decimals, got -5"}},
		{"zero amount", strings.Replace(minimal, `"max_amount": 500000`, `"max_amount": 0`, 1),
			[]string{"products.loan.max_amount: want roubles above zero with at most 2 decimals, got 0"}},
		{"kopeck fractions", strings.Replace(minimal, `"min_amount": 30000`, `"min_amount": 30000.005`, 1),
			[]string{"products.loan.min_amount: want roubles above zero with at most 2 decimals, got 30000.005"}},
		{"exponent", strings.Replace(minimal, `"min_amount": 30000`, `"min_amount": 3e4`, 1),
			[]string{"products.loan.min_amount: want roubles above zero with at most 2 decimals, got 3e4"}},
		{"max below min", strings.Replace(minimal, `"min_amount": 30000`, `"min_amount": 600000`, 1), []string{
			"products.loan.max_amount: below min_amount (600000)",
			"products.loan.grades.A.max_limit: below min_amount (600000): the grade could never be approved"}},
		{"over_limit", strings.Replace(minimal, `"over_limit": "reject"`, `"over_limit": "maybe"`, 1),
			[]string{`products.loan.over_limit: want "offer_limit" or "reject", got "maybe"`}},
		{"over_limit not a string", strings.Replace(minimal, `"over_limit": "reject"`, `"over_limit": true`, 1),
			[]string{`products.loan.over_limit: want "offer_limit" or "reject"`}},
		{"term out of range", strings.Replace(minimal, `{"min": 3, "max": 60}`, `{"min": 0, "max": 361}`, 1),
			[]string{"products.loan.term.min: want 1 to 360 months, got 0", "products.loan.term.max: want 1 to 360 months, got 361"}},
		{"term inverted", strings.Replace(minimal, `{"min": 3, "max": 60}`, `{"min": 60, "max": 3}`, 1),
			[]string{"products.loan.term.max: below min (60)"}},
		{"term fractional and missing", strings.Replace(minimal, `{"min": 3, "max": 60}`, `{"min": 3.5}`, 1),
			[]string{"products.loan.term.min: want a whole number, got 3.5", "products.loan.term.max: required"}},
		{"term on a card", cardWith(`, "term": {"min": 3, "max": 60}`), []string{"products.credit_card.term: a credit card has no term"}},
		{"no grades", strings.Replace(minimal, `{"A": {"max_limit": 500000}}`, `{}`, 1),
			[]string{"products.loan.grades: name at least one accepted grade"}},
		{"grades not an object", strings.Replace(minimal, `{"A": {"max_limit": 500000}}`, `["A"]`, 1),
			[]string{"products.loan.grades: want an object of grades"}},
		{"bad grade name", strings.Replace(minimal, `"A": {`, `"A B": {`, 1),
			[]string{`products.loan.grades: "A B" is not a grade: want 1-8 letters, digits, '+', '-' or '_'`}},
		{"grade without a limit", strings.Replace(minimal, `{"max_limit": 500000}`, `{"limit": 500000}`, 1),
			[]string{"products.loan.grades.A.limit: unknown field", "products.loan.grades.A.max_limit: required"}},
		{"grade below the minimum", strings.Replace(minimal, `{"max_limit": 500000}`, `{"max_limit": 20000}`, 1),
			[]string{"products.loan.grades.A.max_limit: below min_amount (30000): the grade could never be approved"}},
		{"fallback without an action", loanWith(`, "term": {"min": 3, "max": 60}, "no_preapproval": {}`),
			[]string{"products.loan.no_preapproval.action: required"}},
		{"fallback action unknown", loanWith(`, "term": {"min": 3, "max": 60}, "expired": {"action": "ignore"}`),
			[]string{`products.loan.expired.action: want "reject" or "offer", got "ignore"`}},
		{"offer without grade and limit", loanWith(`, "term": {"min": 3, "max": 60}, "no_preapproval": {"action": "offer"}`), []string{
			`products.loan.no_preapproval.grade: required with action "offer"`,
			`products.loan.no_preapproval.limit: required with action "offer"`}},
		{"offer of an unaccepted grade, under the minimum", loanWith(`, "term": {"min": 3, "max": 60}, "no_preapproval": {"action": "offer", "grade": "B", "limit": 100}`), []string{
			`products.loan.no_preapproval.grade: "B" is not among the accepted grades`,
			"products.loan.no_preapproval.limit: below min_amount (30000)"}},
		{"reject with grade and limit", loanWith(`, "term": {"min": 3, "max": 60}, "expired": {"action": "reject", "grade": "A", "limit": 100000}`), []string{
			`products.loan.expired.grade: only with action "offer"`,
			`products.loan.expired.limit: only with action "offer"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.in))
			var ie *InvalidError
			if p != nil || !errors.As(err, &ie) {
				t.Fatalf("Parse = %+v, %v; want an *InvalidError", p, err)
			}
			got := make([]string, len(ie.Problems))
			for i, pr := range ie.Problems {
				got[i] = pr.String()
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestParseReportsEveryProblem is a file with a mistake in nearly every part: one error
// must name them all, in the file's order.
func TestParseReportsEveryProblem(t *testing.T) {
	in := `{
	  "version": 1,
	  "comment": "draft",
	  "products": {
	    "loan": {
	      "min_amount": 30000,
	      "max_amount": 20000,
	      "term": {"min": 3, "max": 600},
	      "over_limit": "offer",
	      "grades": {"A": {"max_limit": 5000000}, "B": {"max_limit": "lots"}},
	      "no_preapproval": {"action": "offer", "grade": "B", "limit": 50000},
	      "expired": {"action": "reject"}
	    },
	    "credit_card": {
	      "min_amount": 10000,
	      "max_amount": 1000000,
	      "term": {"min": 1, "max": 12},
	      "grades": {"A": {"max_limit": 1000000}},
	      "expired": {"action": "offer", "grade": "A", "limit": 5000}
	    }
	  }
	}`
	want := []string{
		"comment: unknown field",
		"products.loan.term.max: want 1 to 360 months, got 600",
		`products.loan.over_limit: want "offer_limit" or "reject", got "offer"`,
		"products.loan.grades.B.max_limit: want a number of roubles",
		"products.loan.max_amount: below min_amount (30000)",
		`products.loan.no_preapproval.grade: "B" is not among the accepted grades`,
		"products.credit_card.term: a credit card has no term",
		"products.credit_card.over_limit: required",
		"products.credit_card.expired.limit: below min_amount (10000)",
	}
	_, err := Parse([]byte(in))
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("Parse = %v", err)
	}
	var got []string
	for _, p := range ie.Problems {
		got = append(got, p.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n got %q\nwant %q", got, want)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "invalid credit policy: comment: unknown field; ") || !strings.HasSuffix(msg, want[len(want)-1]) {
		t.Errorf("Error() = %s", msg)
	}
}

func TestParse(t *testing.T) {
	p, err := Parse([]byte(loanWith(`, "term": {"min": 6, "max": 24},
		"no_preapproval": {"action": "offer", "grade": "A", "limit": 75000.50}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Loan: &Product{
		MinAmount:     money.Roubles(30000),
		MaxAmount:     money.Roubles(500000),
		Term:          &contracts.TermRange{Min: 6, Max: 24},
		OverLimit:     RejectOverLimit,
		Grades:        map[string]Grade{"A": {MaxLimit: money.Roubles(500000)}},
		NoPreapproval: Fallback{Action: Offer, Grade: "A", Limit: money.Roubles(75000) + 50},
		Expired:       Fallback{Action: Reject},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", *p.Loan, *want.Loan)
	}
}
