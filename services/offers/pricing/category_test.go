package pricing

import (
	"errors"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
)

// testTable is a ceiling table for 2025-Q1 (the test searches' quarter) with round values
// that make the hand computations below short. They are not the Bank of Russia's.
//
//	loans up to 12 months:  up to 30 000 ₽: 200 %; to 100 000 ₽: 38 %; over: 35 %
//	loans over 12 months:   any amount: 50 %
//	cards:                  up to 30 000 ₽: 64.164 %; over: 55 %
const testTable = `{"version": 1, "quarters": [{"quarter": "2025-Q1", "source": "test values",
  "categories": [
    {"row": "1", "product_type": "loan", "term_over": 0, "term_up_to": 12, "amount_over": 0, "amount_up_to": 30000, "average": 150, "limit": 200},
    {"row": "2", "product_type": "loan", "term_over": 0, "term_up_to": 12, "amount_over": 30000, "amount_up_to": 100000, "average": 28.5, "limit": 38},
    {"row": "3", "product_type": "loan", "term_over": 0, "term_up_to": 12, "amount_over": 100000, "amount_up_to": 0, "average": 26.25, "limit": 35},
    {"row": "4", "product_type": "loan", "term_over": 12, "term_up_to": 0, "amount_over": 0, "amount_up_to": 0, "average": 37.5, "limit": 50},
    {"row": "5", "product_type": "credit_card", "amount_over": 0, "amount_up_to": 30000, "average": 48.123, "limit": 64.164},
    {"row": "6", "product_type": "credit_card", "amount_over": 30000, "amount_up_to": 0, "average": 41.25, "limit": 55}
  ]}]}`

func testLimits(t *testing.T) ceiling.Limits {
	t.Helper()
	tab, err := ceiling.Parse([]byte(testTable))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) // search.scored's time
	return tab.Between(at, at.Add(7*24*time.Hour))
}

func product(id string, pt contracts.ProductType, amount contracts.AmountRange, terms *contracts.TermRange, rate money.Rate) catalog.Product {
	p := catalog.Product{
		ID: id, ProductType: pt, Amount: amount, Term: terms,
		Rates:        map[string]contracts.RateRange{"A": {Min: rate, Max: rate}},
		ProposalLink: catalog.LinkTemplate{Link: "https://bank.example/apply?offer={product_id}"},
	}
	if pt == contracts.ProductCreditCard {
		p.MinPayment, p.GracePeriod = money.Percent(5), 55
	}
	return p
}

// Each product is narrowed to the part of its range within its category's ceiling, banded
// by amount and term, edges included ("up to 30 000 ₽" holds 30 000 ₽; "over 30 000 ₽"
// starts at 30 001 ₽ for an offer). Without fees the ПСК is the rate, so every figure here is
// read off the table; with a fixed issuance fee F at rate 100 % over one month the client
// gets A − F and repays A·13/12, so ПСК = 100·(A + 12F)/(A − F) %: with F = 1 000 ₽ that is
// 200 % at 14 000 ₽ (100·26 000/13 000) and 200.008 % at 13 999 ₽, and at 50 000 ₽ 126.531 %,
// above the 35…38 % of the bands over 30 000 ₽, where it stays above 120 % at any amount.
func TestCategoryCeilings(t *testing.T) {
	r := func(n int64) money.Amount { return money.Roubles(n) }
	span := func(lo, hi int64) contracts.AmountRange { return contracts.AmountRange{Min: r(lo), Max: r(hi)} }
	terms := func(lo, hi int) *contracts.TermRange { return &contracts.TermRange{Min: lo, Max: hi} }
	fee := product("fee", contracts.ProductLoan, span(2_000, 50_000), terms(1, 1), money.Percent(100))
	fee.Fees.Issuance = &catalog.Fee{Fixed: r(1_000)}
	tests := []struct {
		name    string
		p       catalog.Product
		want    contracts.AmountRange // zero: dropped
		product contracts.ProductType
	}{
		{"40 % short loan: only up to 30 000 ₽ (200 %), not 38 % or 35 %",
			product("p", contracts.ProductLoan, span(10_000, 200_000), terms(6, 12), money.Percent(40)), span(10_000, 30_000), contracts.ProductLoan},
		{"36 % short loan: up to 100 000 ₽ (38 %), the band over it is 35 %",
			product("p", contracts.ProductLoan, span(10_000, 200_000), terms(6, 12), money.Percent(36)), span(10_000, 100_000), contracts.ProductLoan},
		{"38 % short loan: 38 % is within 38 %",
			product("p", contracts.ProductLoan, span(10_000, 200_000), terms(6, 12), money.Percent(38)), span(10_000, 100_000), contracts.ProductLoan},
		{"36 % short loan above 30 000 ₽ only: starts at 30 001 ₽",
			product("p", contracts.ProductLoan, span(30_000, 60_000), terms(3, 3), money.Percent(39)), span(30_000, 30_000), contracts.ProductLoan},
		{"40 % long loan: 50 % over 12 months, whole range",
			product("p", contracts.ProductLoan, span(10_000, 200_000), terms(13, 60), money.Percent(40)), span(10_000, 200_000), contracts.ProductLoan},
		{"40 % loan of 12 to 24 months: month 12 is a short loan's, so only to 30 000 ₽",
			product("p", contracts.ProductLoan, span(10_000, 200_000), terms(12, 24), money.Percent(40)), span(10_000, 30_000), contracts.ProductLoan},
		{"55 % long loan: above 50 % everywhere, dropped",
			product("p", contracts.ProductLoan, span(10_000, 200_000), terms(13, 60), money.Percent(55)), contracts.AmountRange{}, contracts.ProductLoan},
		{"fee loan: from 14 000 ₽ (200 %) to 30 000 ₽",
			fee, span(14_000, 30_000), contracts.ProductLoan},
		{"60 % card: limits up to 30 000 ₽ (64.164 %)",
			product("p", contracts.ProductCreditCard, span(10_000, 100_000), nil, money.Percent(60)), span(10_000, 30_000), contracts.ProductCreditCard},
		{"64.165 % card: above every card band, dropped",
			product("p", contracts.ProductCreditCard, span(10_000, 100_000), nil, 64_165), contracts.AmountRange{}, contracts.ProductCreditCard},
		{"55 % card: every limit",
			product("p", contracts.ProductCreditCard, span(10_000, 100_000), nil, money.Percent(55)), span(10_000, 100_000), contracts.ProductCreditCard},
	}
	lim := testLimits(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &catalog.Catalog{Products: []catalog.Product{tt.p}}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			s := search{product: tt.product, grade: "A", approved: span(1, 1_000_000)}
			res := Quotes(c, s.scored(t), lim)
			if tt.want == (contracts.AmountRange{}) {
				if len(res.Quotes) != 0 || res.Trail["p"] != DroppedCeiling || len(res.Reasons) != 1 || res.Reasons[0] != ReasonAboveCeiling {
					t.Fatalf("quotes %+v, trail %v, reasons %v; want it dropped above the ceiling", res.Quotes, res.Trail, res.Reasons)
				}
				return
			}
			if len(res.Quotes) != 1 {
				t.Fatalf("quotes %+v, trail %v; want one", res.Quotes, res.Trail)
			}
			o := res.Quotes[0].Offer
			if o.Amount != tt.want {
				t.Errorf("amount %s…%s, want %s…%s", o.Amount.Min, o.Amount.Max, tt.want.Min, tt.want.Max)
			}
			wantOutcome := OfferedNarrowed
			if tt.want == tt.p.Amount {
				wantOutcome = Offered
			}
			if res.Trail[tt.p.ID] != wantOutcome {
				t.Errorf("trail %v, want %s", res.Trail, wantOutcome)
			}
			// Whatever leaves is within the ceiling at both ends of its range.
			for _, a := range []money.Amount{o.Amount.Min, o.Amount.Max} {
				if !underCeiling(&tt.p, a, o.Rate.Max, termsOf(&tt.p, o), lim, new([]float64)) {
					t.Errorf("offered %s ₽ is above its ceiling", a)
				}
			}
		})
	}
	// The fee loan's edge, by hand: 200.000 % at 14 000 ₽, 200.008 % at 13 999 ₽.
	var buf []float64
	for a, want := range map[int64]money.Rate{14_000: 200_000, 13_999: 200_008, 50_000: 126_531} {
		if got, err := fullCostOf(&fee, r(a), money.Percent(100), 1, &buf); err != nil || got != want {
			t.Errorf("ПСК at %d ₽ = %s, %v; want %s", a, got, err, want)
		}
	}
}

func termsOf(p *catalog.Product, o contracts.Offer) contracts.TermRange {
	if o.Term == nil {
		return cardTerms(p)
	}
	return *o.Term
}

// yactl catalog's check refuses a product that can exceed its category's ceiling anywhere in
// its range, and says where; the same catalog passes the absolute ceiling the services
// check every revision with.
func TestCheckCeilings(t *testing.T) {
	tab, err := ceiling.Parse([]byte(testTable))
	if err != nil {
		t.Fatal(err)
	}
	c := &catalog.Catalog{Products: []catalog.Product{
		product("short-40", contracts.ProductLoan, contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(200_000)},
			&contracts.TermRange{Min: 6, Max: 12}, money.Percent(40)),
	}}
	data, err := jsonv2.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCatalog(data); err != nil {
		t.Fatalf("ParseCatalog: %v (40 %% is within 292 %%)", err)
	}
	_, err = CheckCeilings(data, tab, time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), 7*24*time.Hour)
	var invalid *catalog.ValidationError
	if !errors.As(err, &invalid) || len(invalid.Problems) != 1 ||
		!strings.Contains(invalid.Problems[0], `product "short-40" grade A: ПСК up to 40 % at 30000.01 ₽, above its category's ceiling of 38 %`) {
		t.Fatalf("CheckCeilings = %v", err)
	}
	// In a quarter the table does not cover, only 292 % applies.
	if _, err := CheckCeilings(data, tab, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), 7*24*time.Hour); err != nil {
		t.Fatalf("CheckCeilings in 2025-Q2 = %v, want none", err)
	}
}

// A narrowed offer's payment range is that of the amounts it keeps, at both ends (found by
// review: the maximum stayed the one of the amount cut off).
func TestNarrowedOfferPayments(t *testing.T) {
	r := money.Roubles
	p := product("p", contracts.ProductLoan, contracts.AmountRange{Min: r(10_000), Max: r(200_000)},
		&contracts.TermRange{Min: 6, Max: 12}, money.Percent(40))
	c := &catalog.Catalog{Products: []catalog.Product{p}}
	s := search{product: contracts.ProductLoan, grade: "A", approved: contracts.AmountRange{Min: 1, Max: r(1_000_000)}}
	res := Quotes(c, s.scored(t), testLimits(t))
	if len(res.Quotes) != 1 {
		t.Fatalf("quotes %+v", res.Quotes)
	}
	o := res.Quotes[0].Offer
	if lo, hi := AnnuityPayment(o.Amount.Min, o.Rate.Min, o.Term.Max), AnnuityPayment(o.Amount.Max, o.Rate.Max, o.Term.Min); *o.Payment.Min != lo || *o.Payment.Max != hi {
		t.Errorf("amount %s…%s, payment %s…%s; want %s…%s", o.Amount.Min, o.Amount.Max, *o.Payment.Min, *o.Payment.Max, lo, hi)
	}
}

// The kopecks just above a band edge are the dearest of their band, so they are checked: a
// fee loan within 38 % at 30 001 ₽ but not at 30 000.01 ₽ is not offered across the edge
// (found by review: pieces began at the next whole rouble). With an issuance fee F, 1 %, one
// month: ПСК = 1200·(A·(1 + 0.01/12)/(A − F) − 1) %; the fee is searched for where the two
// amounts fall on either side of 38 %.
func TestKopecksAboveABandEdge(t *testing.T) {
	r := money.Roubles
	lim := testLimits(t)
	var buf []float64
	for fee := money.Amount(89_000); fee <= 90_500; fee++ {
		p := product("p", contracts.ProductLoan, contracts.AmountRange{Min: r(20_000), Max: r(50_000)},
			&contracts.TermRange{Min: 1, Max: 1}, money.Percent(1))
		p.Fees.Issuance = &catalog.Fee{Fixed: fee}
		at, _ := fullCostOf(&p, r(30_001), money.Percent(1), 1, &buf)
		gap, _ := fullCostOf(&p, r(30_000)+1, money.Percent(1), 1, &buf)
		ceil := lim.At(contracts.ProductLoan, r(30_000)+1, 1)
		if at > ceil || gap <= ceil {
			continue
		}
		c := &catalog.Catalog{Products: []catalog.Product{p}}
		s := search{product: contracts.ProductLoan, grade: "A", approved: contracts.AmountRange{Min: 1, Max: r(1_000_000)}}
		res := Quotes(c, s.scored(t), lim)
		if len(res.Quotes) != 1 {
			t.Fatalf("fee %s ₽: quotes %+v, trail %v", fee, res.Quotes, res.Trail)
		}
		o := res.Quotes[0].Offer
		if o.Amount.Min <= r(30_000)+1 || o.Amount.Min != r(30_001) {
			t.Fatalf("fee %s ₽: offered %s…%s ₽; 30000.01 ₽ is at %s %%, above %s %%: want it from 30 001 ₽ (%s %%)",
				fee, o.Amount.Min, o.Amount.Max, gap, ceil, at)
		}
		return
	}
	t.Fatal("no fee puts 30 000.01 ₽ and 30 001 ₽ on either side of the ceiling")
}
