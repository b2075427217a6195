package pricing

import (
	"errors"
	"slices"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
)

// No offer leaves above the absolute ПСК ceiling (292 %, 353-FZ art. 6 part 11). A short
// loan with a fixed issuance fee is dearest at its smallest amount and shortest term: here
// 100 % a year, 1 000 ₽ withheld at issue, one month. Its ПСК there, by hand: the client gets
// A − 1 000 and repays A·(1 + 1/12) a month later, so i = A·13/12 / (A − 1 000) − 1 and
// ПСК = 1 200·i %: 292.024 % at 7 770 ₽ and 291.995 % at 7 771 ₽. So the offer starts at
// 7 771 ₽; a product whose rate alone is above the ceiling is dropped, and says so.
func TestAbsoluteCeiling(t *testing.T) {
	product := func(id string, rate money.Rate, fee money.Amount) catalog.Product {
		p := catalog.Product{
			ID: id, ProductType: contracts.ProductLoan,
			Amount: contracts.AmountRange{Min: money.Roubles(2_000), Max: money.Roubles(50_000)},
			Term:   &contracts.TermRange{Min: 1, Max: 3},
			Rates:  map[string]contracts.RateRange{"A": {Min: rate, Max: rate}},
			ProposalLink: catalog.LinkTemplate{
				Link: "https://bank.example/apply?offer={product_id}",
			},
		}
		if fee > 0 {
			p.Fees.Issuance = &catalog.Fee{Fixed: fee}
		}
		return p
	}
	c := &catalog.Catalog{Products: []catalog.Product{
		product("payday", money.Percent(100), money.Roubles(1_000)),
		product("usury", money.Percent(300), 0),
		product("plain", money.Percent(30), 0),
	}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := search{product: contracts.ProductLoan, grade: "A", approved: contracts.AmountRange{Min: 1, Max: money.Roubles(1_000_000)}}
	offers, reasons := Quote(c, s.scored(t))
	byID := map[string]contracts.Offer{}
	for _, o := range offers {
		byID[offerID(t, o)] = o
	}
	if len(offers) != 2 || !slices.Equal(reasons, []string{ReasonAboveCeiling}) {
		t.Fatalf("offers %s, reasons %v; want payday and plain, and %s", dump(offers), reasons, ReasonAboveCeiling)
	}
	payday := byID["payday"]
	if payday.Amount != (contracts.AmountRange{Min: money.Roubles(7_771), Max: money.Roubles(50_000)}) {
		t.Errorf("payday amount = %+v, want 7 771…50 000 ₽", payday.Amount)
	}
	if payday.TotalCost.Max != 291_995 {
		t.Errorf("payday ПСК max = %s, want 291.995 (at 7 771 ₽, one month)", payday.TotalCost.Max)
	}
	var buf []float64
	if c, err := fullCostOf(&c.Products[0], money.Roubles(7_770), money.Percent(100), 1, &buf); err != nil || c != 292_024 {
		t.Errorf("ПСК at 7 770 ₽ = %s, %v; want 292.024, above the ceiling", c, err)
	}
	if wantMin := AnnuityPayment(money.Roubles(7_771), money.Percent(100), 3); *payday.Payment.Min != wantMin {
		t.Errorf("payday payment min = %s, want %s (at the narrowed minimum)", *payday.Payment.Min, wantMin)
	}
	if plain := byID["plain"]; plain.Amount != c.Products[2].Amount || plain.TotalCost.Max != money.Percent(30) {
		t.Errorf("a product within the ceiling changed: %+v", plain)
	}
	// Nothing priced from any catalog is above it: the generated catalogs of TestPriceProperties too.
	for _, o := range offers {
		if o.TotalCost.Max > AbsoluteCeiling {
			t.Errorf("offer above the ceiling: %+v", o)
		}
	}
}

// A catalog with a product that can be offered above the ceiling is refused when it is
// put, naming the product, the grade and from which amount it would be lawful; the demo
// catalog passes.
func TestCatalogAboveTheCeilingIsRefused(t *testing.T) {
	if _, err := ParseCatalog(catalog.DemoJSON()); err != nil {
		t.Fatalf("the demo catalog: %v", err)
	}
	c := demo(t)
	payday := catalog.Product{
		ID: "payday", ProductType: contracts.ProductLoan,
		Amount: contracts.AmountRange{Min: money.Roubles(2_000), Max: money.Roubles(50_000)},
		Term:   &contracts.TermRange{Min: 1, Max: 3},
		Rates:  map[string]contracts.RateRange{"A": {Min: money.Percent(100), Max: money.Percent(100)}},
		Fees:   catalog.Fees{Issuance: &catalog.Fee{Fixed: money.Roubles(1_000)}},
		ProposalLink: catalog.LinkTemplate{
			Link: "https://bank.example/apply?offer={product_id}",
		},
	}
	c.Products = append(c.Products, payday)
	data, err := jsonv2.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseCatalog(data)
	var invalid *catalog.ValidationError
	if !errors.As(err, &invalid) || len(invalid.Problems) != 1 ||
		!strings.Contains(invalid.Problems[0], `product "payday" grade A`) || !strings.Contains(invalid.Problems[0], "below 7771 ₽") {
		t.Fatalf("ParseCatalog = %v, want the payday product refused, lawful from 7 771 ₽", err)
	}
}

// A loan whose smallest amount repays nothing a month (1 ₽ over 60 months at 0.001 %) is
// refused: an offer cannot show a payment of 0.
func TestCatalogWithAZeroPaymentIsRefused(t *testing.T) {
	c := demo(t)
	c.Products = append(c.Products, catalog.Product{
		ID: "tiny", ProductType: contracts.ProductLoan,
		Amount: contracts.AmountRange{Min: money.Roubles(1), Max: money.Roubles(50_000)},
		Term:   &contracts.TermRange{Min: 12, Max: 360},
		Rates:  map[string]contracts.RateRange{"A": {Min: 1, Max: 1}},
		ProposalLink: catalog.LinkTemplate{
			Link: "https://bank.example/apply?offer={product_id}",
		},
	})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	problems := PricingProblems(c, ceiling.Limits{})
	if len(problems) != 1 || !strings.Contains(problems[0], `product "tiny" grade A: the monthly payment`) {
		t.Fatalf("problems = %q", problems)
	}
}
