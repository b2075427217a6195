package catalog

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
)

// Limits a product must keep. The amount and term limits are the API's own (a request can
// never ask for more, spec §3); they also keep every fee computation far from overflow.
const (
	MaxAmount = money.Amount(100_000_000 * 100) // 100 000 000 roubles
	MaxTerm   = 360                             // months
	// MaxRate is far above any lawful consumer credit (the Bank of Russia caps the full cost
	// of credit well below it); a rate beyond it is a typo, and refusing it keeps payments
	// inside int64 kopecks.
	MaxRate = money.Rate(1_000_000) // 1000 % a year
)

// hundredPercent caps fee and minimum-payment percentages: above it they are typos.
const hundredPercent = money.Rate(100_000)

var slug = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// ValidationError lists every problem of a catalog, each naming the product and the field,
// so that whoever edits the file can fix them all in one go.
type ValidationError struct {
	Problems []string
}

// Error puts every problem on one line; range over Problems to show them one per line.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("catalog: %d problem(s): %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

// Validate checks everything pricing relies on and returns a *ValidationError listing every
// problem, or nil. A catalog that passes can be priced for any approved score without
// failing: every issue leaves money to issue, every range is ordered, every offer has a link.
func (c *Catalog) Validate() error {
	v := &validator{}
	if len(c.Products) == 0 {
		v.add("products: none")
	}
	firstIndex := make(map[string]int, len(c.Products))
	for i := range c.Products {
		p := &c.Products[i]
		v.prefix = fmt.Sprintf("product %q", p.ID)
		if p.ID == "" {
			v.prefix = fmt.Sprintf("products[%d]", i)
		}
		if j, dup := firstIndex[p.ID]; dup && p.ID != "" {
			v.addf("id: repeated (products[%d] and products[%d])", j, i)
		} else {
			firstIndex[p.ID] = i
		}
		v.product(p)
	}
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

type validator struct {
	prefix   string
	problems []string
}

func (v *validator) add(problem string) { v.problems = append(v.problems, problem) }

func (v *validator) addf(format string, args ...any) {
	v.add(v.prefix + ": " + fmt.Sprintf(format, args...))
}

func (v *validator) product(p *Product) {
	switch {
	case p.ID == "":
		v.addf("id: missing")
	case !slug.MatchString(p.ID):
		v.addf("id: not a slug of a-z, 0-9 and single dashes")
	}
	card := p.ProductType == contracts.ProductCreditCard
	switch {
	case p.ProductType == "":
		v.addf("product_type: missing")
	case !p.ProductType.Valid():
		v.addf("product_type: %q is not loan or credit_card", p.ProductType)
	}
	if p.Decision != "" && !p.Decision.Valid() {
		v.addf("decision: %q is not pre_approved or full_approved", p.Decision)
	}
	v.amount(p.Amount)
	v.term(p, card)
	v.rates(p.Rates)
	v.fees(p, card)
	v.cardTerms(p, card)
	v.texts("special_conditions", p.SpecialConditions)
	v.texts("required_documents", p.RequiredDocuments)
	v.texts("choosable_documents", p.ChoosableDocuments)
	v.link(p.ProposalLink, p.ID)
}

func (v *validator) amount(a contracts.AmountRange) {
	switch {
	case a.Min <= 0:
		v.addf("amount: min %s is not positive", a.Min)
	case a.Min > a.Max:
		v.addf("amount: min %s > max %s", a.Min, a.Max)
	case a.Max > MaxAmount:
		v.addf("amount: max %s is above the API's limit %s", a.Max, MaxAmount)
	}
}

func (v *validator) term(p *Product, card bool) {
	t := p.Term
	switch {
	case card && t != nil:
		v.addf("term: a credit card has no term")
	case card:
	case t == nil:
		if p.ProductType == contracts.ProductLoan {
			v.addf("term: a loan needs one")
		}
	case t.Min < 1:
		v.addf("term: min %d is not positive", t.Min)
	case t.Min > t.Max:
		v.addf("term: min %d > max %d", t.Min, t.Max)
	case t.Max > MaxTerm:
		v.addf("term: max %d is above the API's limit %d", t.Max, MaxTerm)
	}
}

func (v *validator) rates(rates map[string]contracts.RateRange) {
	if len(rates) == 0 {
		v.addf("rates: no grades")
		return
	}
	grades := make([]string, 0, len(rates))
	for g := range rates {
		grades = append(grades, g)
	}
	slices.Sort(grades) // a stable order, so the same file always gives the same report
	for _, g := range grades {
		r := rates[g]
		switch {
		case strings.TrimSpace(g) == "":
			v.addf("rates[%q]: empty grade", g)
		case r.Min < 0:
			v.addf("rates[%q]: min %s is negative", g, r.Min)
		case r.Min > r.Max:
			v.addf("rates[%q]: min %s > max %s", g, r.Min, r.Max)
		case r.Max > MaxRate:
			v.addf("rates[%q]: max %s is above %s", g, r.Max, MaxRate)
		}
	}
}

func (v *validator) fees(p *Product, card bool) {
	v.fee("fees.issuance", p.Fees.Issuance)
	v.fee("fees.monthly", p.Fees.Monthly)
	v.fee("fees.annual", p.Fees.Annual)
	if p.Fees.Annual != nil && !card {
		v.addf("fees.annual: only a credit card has an annual service fee")
	}
	// What is charged on the day of issue must leave money to issue at every amount the
	// product offers; otherwise the credit has no cost to compute. Percentages below 100 %
	// make the net issue grow with the amount, so checking the minimum is enough.
	upfront := Fee{}
	for _, f := range []*Fee{p.Fees.Issuance, p.Fees.Annual} {
		if f != nil {
			upfront.Percent += f.Percent
			upfront.Fixed += f.Fixed
		}
	}
	switch {
	case upfront.Percent >= hundredPercent:
		v.addf("fees: issuance and annual percentages add up to %s, leaving nothing to issue", upfront.Percent)
	case upfront.Percent < 0 || upfront.Fixed < 0 || p.Amount.Min <= 0 || p.Amount.Min > MaxAmount:
		// reported above; a charge computed from these would only add noise
	default:
		if charged := upfront.Charge(p.Amount.Min); charged >= p.Amount.Min {
			v.addf("fees: %s charged at issue leaves nothing to issue at the minimum amount %s", charged, p.Amount.Min)
		}
	}
}

func (v *validator) fee(field string, f *Fee) {
	if f == nil {
		return
	}
	if f.Percent < 0 {
		v.addf("%s.percent: %s is negative", field, f.Percent)
	}
	if f.Percent > hundredPercent {
		v.addf("%s.percent: %s is above 100", field, f.Percent)
	}
	if f.Fixed < 0 {
		v.addf("%s.fixed: %s is negative", field, f.Fixed)
	}
	if f.Fixed > MaxAmount {
		v.addf("%s.fixed: %s is above %s", field, f.Fixed, MaxAmount)
	}
}

func (v *validator) cardTerms(p *Product, card bool) {
	switch {
	case card && p.GracePeriod <= 0:
		v.addf("grace_period: a credit card needs a positive one")
	case !card && p.GracePeriod != 0:
		v.addf("grace_period: only a credit card has one")
	}
	switch {
	case card && p.MinPayment <= 0:
		v.addf("min_payment: a credit card needs a positive one")
	case card && p.MinPayment > hundredPercent:
		v.addf("min_payment: %s is above 100", p.MinPayment)
	case !card && p.MinPayment != 0:
		v.addf("min_payment: only a credit card has one")
	}
}

func (v *validator) texts(field string, texts []string) {
	for i, s := range texts {
		if strings.TrimSpace(s) == "" {
			v.addf("%s[%d]: empty", field, i)
		}
	}
}

// sampleSearchID stands in for a real one when a template is checked.
const sampleSearchID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

func (v *validator) link(t LinkTemplate, id string) {
	if t.Link == "" && t.Deep == "" {
		v.addf("proposal_link: needs link or deep")
		return
	}
	expanded := t.Expand(sampleSearchID, id)
	for _, l := range []struct{ field, template, expanded string }{
		{"proposal_link.link", t.Link, expanded.Link},
		{"proposal_link.deep", t.Deep, expanded.Deep},
	} {
		if l.template == "" {
			continue
		}
		if strings.ContainsAny(l.expanded, "{}") {
			v.addf("%s: unknown placeholder; only %s and %s are replaced", l.field, SearchIDPlaceholder, ProductIDPlaceholder)
			continue
		}
		// RFC 3986 has no place for these in a URI: a link with one would break where it is
		// pasted, and the record's reference marker (contracts.RefMarker) relies on a link
		// encoding without a backslash.
		if i := strings.IndexFunc(l.expanded, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`\"<>^|`+"`", r) }); i >= 0 {
			v.addf("%s: %q at byte %d is not allowed in a URI (RFC 3986): percent-encode it", l.field, l.expanded[i:i+1], i)
			continue
		}
		u, err := url.Parse(l.expanded)
		if err != nil || u.Scheme == "" {
			v.addf("%s: not an absolute URL", l.field)
			continue
		}
		for _, p := range []string{offerlink.RefParam, "token"} {
			if u.Query().Has(p) {
				v.addf("%s: the %q parameter is the link reference's, added to every link", l.field, p)
			}
		}
		if n := offerlink.LinkLength(l.expanded, id); n > offerlink.MaxLinkLength {
			v.addf("%s: with its reference, the link can reach %d characters, more than %d", l.field, n, offerlink.MaxLinkLength)
		}
	}
}
