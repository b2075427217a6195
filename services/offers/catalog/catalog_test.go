package catalog

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

func TestDemo(t *testing.T) {
	c, err := Demo()
	if err != nil {
		t.Fatalf("Demo() error: %v", err)
	}
	count := map[contracts.ProductType]int{}
	var withFees, withoutFees int
	for _, p := range c.Products {
		count[p.ProductType]++
		if p.ProductType == contracts.ProductLoan {
			if p.Fees.Any() {
				withFees++
			} else {
				withoutFees++
			}
		}
		for _, g := range []string{"A", "B"} {
			if _, ok := p.Rates[g]; !ok {
				t.Errorf("product %q has no rate for grade %s", p.ID, g)
			}
		}
	}
	if count[contracts.ProductLoan] < 2 || count[contracts.ProductCreditCard] < 1 || withFees < 1 || withoutFees < 1 {
		t.Errorf("demo has %v products, %d loans with fees and %d without; want ≥2 loans (one with fees, one without) and ≥1 card",
			count, withFees, withoutFees)
	}
	// Every call is a fresh copy, so no caller can change what the next one sees.
	c.Products[0].ID = "changed"
	again, _ := Demo()
	if again.Products[0].ID == "changed" {
		t.Error("Demo() shares its catalog between calls")
	}
	if !json.Valid(DemoJSON()) {
		t.Error("DemoJSON() is not JSON")
	}
}

// TestParseStrict covers what is refused before validation: the file must say exactly what
// it means, with no unknown or repeated key and no number the types cannot hold exactly.
func TestParseStrict(t *testing.T) {
	tests := []struct {
		name, json, wantErr string
	}{
		{"unknown field", `{"products":[{"id":"x","fess":{}}]}`, `unknown object member name "fess" within "/products/0"`},
		{"name in the wrong case", `{"Products":[]}`, `unknown object member name "Products"`},
		{"repeated grade", `{"products":[{"rates":{"A":{"min":1,"max":2},"A":{"min":3,"max":4}}}]}`,
			`duplicate object member name "A" within "/products/0/rates"`},
		{"repeated top key", `{"products":[],"products":[]}`, `duplicate object member name "products"`},
		{"invalid UTF-8", "{\"products\":[{\"id\":\"\xff\"}]}", "invalid UTF-8"},
		{"trailing data", `{"products":[]} {}`, `after top-level value`},
		{"rate with four decimals", `{"products":[{"rates":{"A":{"min":19.9001,"max":20}}}]}`, "too many decimal places"},
		{"amount as a string", `{"products":[{"amount":{"min":"30000","max":1}}]}`, "not a decimal number"},
		{"cut short", `{"products":[`, `unexpected EOF within "/products"`},
		{"empty", ``, "catalog: jsontext: unexpected EOF"},
		// The decoder says "cannot" or "unable to" at random, per process, on purpose.
		{"not an object", `[]`, "unmarshal JSON array into Go catalog.Catalog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// validProduct is a loan that passes; each bad-catalog case breaks it in one way.
func validProduct() Product {
	return Product{
		ID:          "cash",
		ProductType: contracts.ProductLoan,
		Amount:      contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)},
		Term:        &contracts.TermRange{Min: 12, Max: 60},
		Rates:       map[string]contracts.RateRange{"A": {Min: 19_900, Max: 22_900}},
		ProposalLink: LinkTemplate{
			Link: "https://bank.example/apply?offer={product_id}",
		},
	}
}

func validCard() Product {
	p := validProduct()
	p.ID, p.ProductType, p.Term = "card", contracts.ProductCreditCard, nil
	p.GracePeriod, p.MinPayment = 120, money.Percent(3)
	return p
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Catalog)
		want   []string
	}{
		{"valid loan and card", func(c *Catalog) {}, nil},
		{"no products", func(c *Catalog) { c.Products = nil }, []string{"products: none"}},
		{"missing id", func(c *Catalog) { c.Products[0].ID = "" }, []string{"products[0]: id: missing"}},
		{"id not a slug", func(c *Catalog) { c.Products[0].ID = "Cash Loan" },
			[]string{`product "Cash Loan": id: not a slug of a-z, 0-9 and single dashes`}},
		{"repeated id", func(c *Catalog) { c.Products[1].ID = "cash" },
			[]string{`product "cash": id: repeated (products[0] and products[1])`}},
		{"unknown type", func(c *Catalog) { c.Products[0].ProductType = "mortgage" },
			[]string{`product "cash": product_type: "mortgage" is not loan or credit_card`}},
		{"missing type", func(c *Catalog) { c.Products[0].ProductType = "" },
			[]string{`product "cash": product_type: missing`}},
		{"unknown decision", func(c *Catalog) { c.Products[0].Decision = "maybe" },
			[]string{`product "cash": decision: "maybe" is not pre_approved or full_approved`}},
		{"zero amount", func(c *Catalog) { c.Products[0].Amount.Min = 0 },
			[]string{`product "cash": amount: min 0 is not positive`}},
		{"inverted amount", func(c *Catalog) { c.Products[0].Amount.Min = money.Roubles(2_000_000) },
			[]string{`product "cash": amount: min 2000000 > max 1000000`}},
		{"amount above the API limit", func(c *Catalog) { c.Products[0].Amount.Max = MaxAmount + 1 },
			[]string{`product "cash": amount: max 100000000.01 is above the API's limit 100000000`}},
		{"loan without term", func(c *Catalog) { c.Products[0].Term = nil },
			[]string{`product "cash": term: a loan needs one`}},
		{"inverted term", func(c *Catalog) { c.Products[0].Term = &contracts.TermRange{Min: 36, Max: 12} },
			[]string{`product "cash": term: min 36 > max 12`}},
		{"zero term", func(c *Catalog) { c.Products[0].Term = &contracts.TermRange{Min: 0, Max: 12} },
			[]string{`product "cash": term: min 0 is not positive`}},
		{"term above the API limit", func(c *Catalog) { c.Products[0].Term.Max = 361 },
			[]string{`product "cash": term: max 361 is above the API's limit 360`}},
		{"card with term", func(c *Catalog) { c.Products[1].Term = &contracts.TermRange{Min: 12, Max: 12} },
			[]string{`product "card": term: a credit card has no term`}},
		{"no grades", func(c *Catalog) { c.Products[0].Rates = nil },
			[]string{`product "cash": rates: no grades`}},
		{"inverted rate", func(c *Catalog) { c.Products[0].Rates["B"] = contracts.RateRange{Min: 30_000, Max: 25_000} },
			[]string{`product "cash": rates["B"]: min 30 > max 25`}},
		{"negative rate", func(c *Catalog) { c.Products[0].Rates["B"] = contracts.RateRange{Min: -1, Max: 25_000} },
			[]string{`product "cash": rates["B"]: min -0.001 is negative`}},
		{"rate above the cap", func(c *Catalog) { c.Products[0].Rates["B"] = contracts.RateRange{Min: 1, Max: MaxRate + 1} },
			[]string{`product "cash": rates["B"]: max 1000.001 is above 1000`}},
		{"empty grade", func(c *Catalog) { c.Products[0].Rates[" "] = contracts.RateRange{Min: 1, Max: 2} },
			[]string{`product "cash": rates[" "]: empty grade`}},
		{"negative fees", func(c *Catalog) {
			c.Products[0].Fees = Fees{Issuance: &Fee{Percent: -1_000}, Monthly: &Fee{Fixed: -100}}
		}, []string{
			`product "cash": fees.issuance.percent: -1 is negative`,
			`product "cash": fees.monthly.fixed: -1 is negative`,
		}},
		{"fee percent above 100", func(c *Catalog) { c.Products[0].Fees.Monthly = &Fee{Percent: money.Percent(101)} },
			[]string{`product "cash": fees.monthly.percent: 101 is above 100`}},
		{"issuance fee eats the minimum amount", func(c *Catalog) {
			c.Products[0].Fees.Issuance = &Fee{Percent: money.Percent(50), Fixed: money.Roubles(15_000)}
		}, []string{`product "cash": fees: 30000 charged at issue leaves nothing to issue at the minimum amount 30000`}},
		{"issuance and annual percentages reach 100", func(c *Catalog) {
			c.Products[1].Fees = Fees{Issuance: &Fee{Percent: money.Percent(60)}, Annual: &Fee{Percent: money.Percent(40)}}
		}, []string{`product "card": fees: issuance and annual percentages add up to 100, leaving nothing to issue`}},
		{"loan with annual fee", func(c *Catalog) { c.Products[0].Fees.Annual = &Fee{Fixed: money.Roubles(990)} },
			[]string{`product "cash": fees.annual: only a credit card has an annual service fee`}},
		{"card without grace or minimum payment", func(c *Catalog) { c.Products[1].GracePeriod, c.Products[1].MinPayment = 0, 0 },
			[]string{`product "card": grace_period: a credit card needs a positive one`,
				`product "card": min_payment: a credit card needs a positive one`}},
		{"card minimum payment above 100", func(c *Catalog) { c.Products[1].MinPayment = money.Percent(120) },
			[]string{`product "card": min_payment: 120 is above 100`}},
		{"loan with card terms", func(c *Catalog) { c.Products[0].GracePeriod, c.Products[0].MinPayment = 55, money.Percent(5) },
			[]string{`product "cash": grace_period: only a credit card has one`,
				`product "cash": min_payment: only a credit card has one`}},
		{"empty document", func(c *Catalog) { c.Products[0].RequiredDocuments = []string{"Паспорт РФ", " "} },
			[]string{`product "cash": required_documents[1]: empty`}},
		{"no link", func(c *Catalog) { c.Products[0].ProposalLink = LinkTemplate{} },
			[]string{`product "cash": proposal_link: needs link or deep`}},
		{"a character no URI has", func(c *Catalog) { c.Products[0].ProposalLink.Link = `https://bank.example/a\pply` },
			[]string{`product "cash": proposal_link.link: "\\" at byte 22 is not allowed in a URI (RFC 3986): percent-encode it`}},
		{"a space", func(c *Catalog) { c.Products[0].ProposalLink.Deep = "bank://apply now" },
			[]string{`product "cash": proposal_link.deep: " " at byte 12 is not allowed in a URI (RFC 3986): percent-encode it`}},
		{"misspelt placeholder", func(c *Catalog) { c.Products[0].ProposalLink.Deep = "bank://a?s={search_id}&o={product}" },
			[]string{`product "cash": proposal_link.deep: unknown placeholder; only {search_id} and {product_id} are replaced`}},
		{"relative link", func(c *Catalog) { c.Products[0].ProposalLink.Link = "/apply" },
			[]string{`product "cash": proposal_link.link: not an absolute URL`}},
		{"a ref parameter of its own", func(c *Catalog) {
			c.Products[0].ProposalLink.Link = "https://bank.example/apply?ref=x"
		}, []string{`product "cash": proposal_link.link: the "ref" parameter is the link reference's, added to every link`}},
		{"a legacy token parameter", func(c *Catalog) {
			c.Products[0].ProposalLink.Link = "https://bank.example/apply?token=x"
		}, []string{`product "cash": proposal_link.link: the "token" parameter is the link reference's, added to every link`}},
		{"too long with its reference", func(c *Catalog) {
			c.Products[0].ProposalLink.Link = "https://bank.example/apply?pad=" + strings.Repeat("p", 60)
		}, []string{`product "cash": proposal_link.link: with its reference, the link can reach 263 characters, more than 250`}},
		{"the search id in the link: too long with it", func(c *Catalog) {
			c.Products[0].ProposalLink.Link = "https://bank.example/apply/loans/cash?search_id={search_id}"
		}, []string{`product "cash": proposal_link.link: with its reference, the link can reach 256 characters, more than 250`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Catalog{Products: []Product{validProduct(), validCard()}}
			tt.modify(c)
			assertProblems(t, c.Validate(), tt.want)
		})
	}
}

// TestValidateReportsEveryProblem is the point of Validate: one pass names every mistake in
// every product, so a refused catalog can be fixed in one edit.
func TestValidateReportsEveryProblem(t *testing.T) {
	loan, card, dup := validProduct(), validCard(), validProduct()
	loan.Rates["B"] = contracts.RateRange{Min: 30_000, Max: 25_000}
	loan.Fees.Monthly = &Fee{Percent: -200}
	card.Term = &contracts.TermRange{Min: 1, Max: 12}
	card.ProposalLink = LinkTemplate{Link: "https://bank.example/card"}
	dup.Amount.Max = 0
	c := &Catalog{Products: []Product{loan, card, dup}}
	assertProblems(t, c.Validate(), []string{
		`product "cash": rates["B"]: min 30 > max 25`,
		`product "cash": fees.monthly.percent: -0.2 is negative`,
		`product "card": term: a credit card has no term`,
		`product "cash": id: repeated (products[0] and products[2])`,
		`product "cash": amount: min 30000 > max 0`,
	})
}

func assertProblems(t *testing.T, err error, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Validate() = %v; want nil", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v; want a *ValidationError", err)
	}
	if !slices.Equal(ve.Problems, want) {
		t.Errorf("problems:\n got %q\nwant %q", ve.Problems, want)
	}
}

func TestParseRefusesInvalidCatalog(t *testing.T) {
	_, err := Parse([]byte(`{"products":[]}`))
	assertProblems(t, err, []string{"products: none"})
}

func TestExpand(t *testing.T) {
	tmpl := LinkTemplate{
		Link: "https://bank.example/apply/{product_id}?search_id={search_id}",
		Deep: "bank://apply/{search_id}",
	}
	tests := []struct {
		name, searchID string
		want           contracts.ProposalLink
	}{
		{"uuid", "e2b4948b-7d8a-4eec-875c-b1c11d7d8372", contracts.ProposalLink{
			Link: "https://bank.example/apply/cash-x?search_id=e2b4948b-7d8a-4eec-875c-b1c11d7d8372",
			Deep: "bank://apply/e2b4948b-7d8a-4eec-875c-b1c11d7d8372",
		}},
		// Unreachable with validated ids, but a link must never be bent by what it carries.
		{"reserved characters", "a b&c=d/e+f?", contracts.ProposalLink{
			Link: "https://bank.example/apply/cash-x?search_id=a%20b%26c%3Dd%2Fe%2Bf%3F",
			Deep: "bank://apply/a%20b%26c%3Dd%2Fe%2Bf%3F",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tmpl.Expand(tt.searchID, "cash-x"); got != tt.want {
				t.Errorf("Expand = %+v; want %+v", got, tt.want)
			}
		})
	}
	if got := (LinkTemplate{Link: "https://b/{search_id}"}).Expand("x", "y"); got.Deep != "" {
		t.Errorf("an absent deep template expanded to %q", got.Deep)
	}
}

func TestCharge(t *testing.T) {
	tests := []struct {
		fee    Fee
		amount money.Amount
		want   money.Amount
	}{
		{Fee{Percent: money.Percent(2)}, money.Roubles(100_000), money.Roubles(2_000)},
		{Fee{Percent: 1_500, Fixed: money.Roubles(990)}, money.Roubles(30_000), money.Roubles(1_440)}, // 450 + 990
		{Fee{Percent: 200}, 12_345, 25}, // 0.2 % of 123.45 = 0.2469 → 0.25
		{Fee{Percent: 200}, 1_250, 3},   // 0.2 % of 12.50 = 0.025 → 0.03, half-up
		{Fee{Percent: 200}, 1_249, 2},   // 0.02498 → 0.02
		{Fee{Fixed: money.Roubles(990)}, money.Roubles(5), money.Roubles(990)},
	}
	for _, tt := range tests {
		if got := tt.fee.Charge(tt.amount); got != tt.want {
			t.Errorf("%+v.Charge(%s) = %s; want %s", tt.fee, tt.amount, got, tt.want)
		}
	}
}
