package pricing

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
)

const searchID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

// search describes a scored search; scored builds it through contracts.NewScored, so every
// test input is a message scoring could really send.
type search struct {
	product   contracts.ProductType
	declined  bool
	kind      contracts.OfferDecision
	grade     string
	approved  contracts.AmountRange
	term      *contracts.TermRange // approved term, when scoring bounds it
	wantMoney money.Amount         // the request's amount, 0 for none
	wantTerm  int                  // the request's term, 0 for none
}

func (s search) scored(t testing.TB) *contracts.Scored {
	t.Helper()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	req := contracts.LoanRequested{
		SearchID:    searchID,
		PhoneHash:   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		PhoneMasked: "+7933***5040",
		ProductType: s.product,
		RequestedAt: at,
		Deadline:    at.Add(10 * time.Second),
	}
	if s.wantMoney != 0 {
		req.Amount = &s.wantMoney
	}
	if s.wantTerm != 0 {
		req.Term = &s.wantTerm
	}
	sc := contracts.Scored{Request: req, Verdict: contracts.Declined, ScoredAt: at}
	if !s.declined {
		sc.Verdict, sc.Kind, sc.Grade, sc.Amount, sc.Term = contracts.Approved, cmpOr(s.kind, contracts.PreApproved), s.grade, &s.approved, s.term
	}
	out, err := contracts.NewScored(sc)
	if err != nil {
		t.Fatalf("test search is not a valid score: %v", err)
	}
	return out
}

func cmpOr(a, b contracts.OfferDecision) contracts.OfferDecision {
	if a != "" {
		return a
	}
	return b
}

// demo is the demo catalog with each product's id in its links, so that a test can tell its
// offers apart (the demo's links carry none: the reference says which offer it is).
func demo(t testing.TB) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Demo()
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Products {
		l := &c.Products[i].ProposalLink
		if l.Link != "" {
			l.Link += "?offer=" + catalog.ProductIDPlaceholder
		}
		if l.Deep != "" {
			l.Deep += "?offer=" + catalog.ProductIDPlaceholder
		}
	}
	return c
}

func amt(k money.Amount) *money.Amount { return &k }

// TestPriceSpecExample is the spec's example request (loan, 500 000 ₽, 36 months) for a
// grade-A client approved up to 1 000 000 ₽, priced on the demo catalog, every number
// pinned. They were recomputed independently (python3, mpmath at 50 digits):
//   - payments: the formula in TestAnnuityPayment plus the monthly fee, e.g. cash-insured
//     min = pay(3000000, 19900, 60) + 0.2 % of 30 000 ₽ = 793.15 + 60.00 = 853.15 ₽;
//   - ПСК: psk() from TestFullCost on the flows Price documents, minimised/maximised over
//     every term of the range, e.g. cash-express max = psk([(0, -30000 + 450 + 990)] +
//     [(k, annuity(30000, 25.9 %, 12)) for k in 1..12]) = 35.667 %, at the shortest term,
//     and cash-insured min = 23.430 % at (1 000 000 ₽, 19.9 %, 60 months).
func TestPriceSpecExample(t *testing.T) {
	s := search{product: contracts.ProductLoan, grade: "A", wantMoney: money.Roubles(500_000), wantTerm: 36,
		approved: contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(1_000_000)}}
	link := func(id string) string { return "https://bank.example/apply?offer=" + id }
	deep := func(id string) string { return "demobank://apply?offer=" + id }
	want := []contracts.Offer{{
		ProductType:        contracts.ProductLoan,
		Decision:           contracts.PreApproved,
		Amount:             contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)},
		Term:               &contracts.TermRange{Min: 12, Max: 60},
		Rate:               contracts.RateRange{Min: 21_900, Max: 24_900},
		TotalCost:          contracts.RateRange{Min: 21_900, Max: 24_900}, // no fees: the rate itself
		Payment:            contracts.Payment{Min: amt(82_686), Max: amt(9_499_568)},
		SpecialConditions:  []string{"Без комиссий и без обязательной страховки"},
		RequiredDocuments:  []string{"Паспорт РФ"},
		ChoosableDocuments: []string{"2-НДФЛ", "Справка по форме банка", "Выписка из СФР о состоянии ИЛС"},
		ProposalLink:       contracts.ProposalLink{Link: link("cash-standard"), Deep: deep("cash-standard")},
	}, {
		ProductType: contracts.ProductLoan,
		Decision:    contracts.PreApproved,
		Amount:      contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)},
		Term:        &contracts.TermRange{Min: 12, Max: 60},
		Rate:        contracts.RateRange{Min: 19_900, Max: 21_900},
		TotalCost:   contracts.RateRange{Min: 23_430, Max: 26_033},
		// 793.15 + 60.00 and 93 546.26 + 2 000.00 (0.2 % of 1 000 000 ₽)
		Payment: contracts.Payment{Min: amt(85_315), Max: amt(9_554_626)},
		SpecialConditions: []string{
			"Ставка действует при подключении страхования жизни и здоровья",
			"Страховой взнос — 0,2 % от суммы кредита в месяц, входит в ежемесячный платёж",
		},
		RequiredDocuments:  []string{"Паспорт РФ"},
		ChoosableDocuments: []string{"2-НДФЛ", "Справка по форме банка"},
		ProposalLink:       contracts.ProposalLink{Link: link("cash-insured")},
	}, {
		ProductType: contracts.ProductLoan,
		Decision:    contracts.FullApproved, // the product's own decision outranks scoring's kind
		Amount:      contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(500_000)},
		Term:        &contracts.TermRange{Min: 12, Max: 36},
		Rate:        contracts.RateRange{Min: 22_900, Max: 25_900},
		TotalCost:   contracts.RateRange{Min: 24_176, Max: 35_667},
		Payment:     contracts.Payment{Min: amt(115_973), Max: amt(4_774_074)},
		SpecialConditions: []string{
			"Деньги на карту за 5 минут, без визита в офис",
			"Комиссия за выдачу — 1,5 % от суммы плюс 990 ₽",
		},
		RequiredDocuments: []string{"Паспорт РФ"},
		ProposalLink:      contracts.ProposalLink{Link: link("cash-express"), Deep: deep("cash-express")},
	}}
	got := Price(demo(t), s.scored(t))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Price:\n got %s\nwant %s", dump(got), dump(want))
	}
	for _, o := range got {
		if o.Amount.Min > s.wantMoney || s.wantMoney > o.Amount.Max || o.Term.Min > s.wantTerm || s.wantTerm > o.Term.Max {
			t.Errorf("%s does not offer the requested 500 000 ₽ for 36 months", offerID(t, o))
		}
	}
}

// TestPriceCards pins the card offers for a grade-A client approved up to 1 000 000 ₽. The
// ПСК assumes the whole limit drawn on day one and repaid by minimum payments (see Price):
// card-120's 3 % of the limit plus the month's interest, 34 payments (33 × 3 % and the last
// 1 %), with the 990 ₽ annual fee in advance at months 0, 12 and 24. Its max, at a 10 000 ₽
// limit and 34.9 %: flows −10 000 + 990, then 300 + debt·34.9/1200 (debt 10 000, 9 700, …),
// plus 990 at months 12 and 24, the last 100 + 100·34.9/1200; their IRR × 1200 is 56.215 %
// (recomputed outside Go with 50-digit decimals). Its min, at 1 000 000 ₽ and 29.9 %:
// 30.109 %. A fixed fee weighs heavily on a small limit. card-classic has no fees: its ПСК
// is its rate.
func TestPriceCards(t *testing.T) {
	s := search{product: contracts.ProductCreditCard, grade: "A", approved: contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(1_000_000)}}
	grace120, grace55 := 120, 55
	cc3, cc5 := money.Percent(3), money.Percent(5)
	want := []contracts.Offer{{
		ProductType:        contracts.ProductCreditCard,
		Decision:           contracts.PreApproved,
		Amount:             contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(1_000_000)},
		Rate:               contracts.RateRange{Min: 29_900, Max: 34_900},
		TotalCost:          contracts.RateRange{Min: 30_109, Max: 56_215},
		Payment:            contracts.Payment{CCRate: &cc3},
		GracePeriod:        &grace120,
		SpecialConditions:  []string{"120 дней без процентов на покупки", "Обслуживание — 990 ₽ в год"},
		RequiredDocuments:  []string{"Паспорт РФ"},
		ChoosableDocuments: []string{"2-НДФЛ", "Справка по форме банка"},
		ProposalLink: contracts.ProposalLink{
			Link: "https://bank.example/apply?offer=card-120",
			Deep: "demobank://card?offer=card-120",
		},
	}, {
		ProductType:       contracts.ProductCreditCard,
		Decision:          contracts.PreApproved,
		Amount:            contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(300_000)},
		Rate:              contracts.RateRange{Min: 34_900, Max: 39_900},
		TotalCost:         contracts.RateRange{Min: 34_900, Max: 39_900},
		Payment:           contracts.Payment{CCRate: &cc5},
		GracePeriod:       &grace55,
		SpecialConditions: []string{"Бесплатное обслуживание"},
		RequiredDocuments: []string{"Паспорт РФ"},
		ProposalLink:      contracts.ProposalLink{Link: "https://bank.example/apply?offer=card-classic"},
	}}
	if got := Price(demo(t), s.scored(t)); !reflect.DeepEqual(got, want) {
		t.Errorf("Price:\n got %s\nwant %s", dump(got), dump(want))
	}
}

type summary struct {
	id       string
	decision contracts.OfferDecision
	amount   contracts.AmountRange
	term     *contracts.TermRange
}

func TestPrice(t *testing.T) {
	upTo := func(max int64) contracts.AmountRange {
		return contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(max)}
	}
	r := func(min, max int64) contracts.AmountRange {
		return contracts.AmountRange{Min: money.Roubles(min), Max: money.Roubles(max)}
	}
	terms := func(min, max int) *contracts.TermRange { return &contracts.TermRange{Min: min, Max: max} }
	pre, full := contracts.PreApproved, contracts.FullApproved
	loan, card := contracts.ProductLoan, contracts.ProductCreditCard
	tests := []struct {
		name   string
		search search
		want   []summary
	}{
		{"declined gets nothing", search{product: loan, declined: true}, nil},
		{"unknown grade gets nothing", search{product: loan, grade: "D", approved: upTo(1_000_000)}, nil},
		{"a card search gets only cards", search{product: card, grade: "A", approved: upTo(1_000_000), wantMoney: money.Roubles(150_000)},
			[]summary{
				{"card-120", pre, r(10_000, 1_000_000), nil},   // ПСК from 30.109 %
				{"card-classic", pre, r(10_000, 300_000), nil}, // no fees: 34.9 %
			}},
		{"grade C is not sold the express loan", search{product: loan, grade: "C", approved: upTo(1_000_000)},
			[]summary{
				{"cash-standard", pre, r(30_000, 1_000_000), terms(12, 60)}, // 27.9 %
				{"cash-insured", pre, r(30_000, 1_000_000), terms(12, 60)},  // 24.9 % + insurance = 28.260 %
			}},
		{"approved below every loan's minimum", search{product: loan, grade: "A", approved: r(5_000, 25_000)}, nil},
		{"approved below a card's minimum", search{product: card, grade: "A", approved: r(1_000, 9_999)}, nil},
		{"approved range cuts the card limits", search{product: card, grade: "B", approved: r(5_000, 200_000)},
			[]summary{
				{"card-120", pre, r(10_000, 200_000), nil},
				{"card-classic", pre, r(10_000, 200_000), nil},
			}},
		{"approved term narrows the term", search{product: loan, grade: "B", kind: full, approved: upTo(300_000), term: terms(6, 24)},
			[]summary{
				{"cash-standard", full, r(30_000, 300_000), terms(12, 24)}, // 24.9 %
				{"cash-insured", full, r(30_000, 300_000), terms(12, 24)},  // 21.9 % + insurance = 25.909 %
				{"cash-express", full, r(30_000, 300_000), terms(12, 24)},  // 25.9 % + issuance fee = 27.880 %
			}},
		{"approved term outside a product's", search{product: loan, grade: "A", approved: upTo(1_000_000), term: terms(48, 84)},
			[]summary{
				{"cash-standard", pre, r(30_000, 1_000_000), terms(48, 60)},
				{"cash-insured", pre, r(30_000, 1_000_000), terms(48, 60)},
			}},
		// The request is a wish: asking for less than a product lends, or for a term it does
		// not have, does not hide it.
		{"a wish outside the products is not a filter", search{product: loan, grade: "A", approved: upTo(1_000_000),
			wantMoney: money.Roubles(10_000), wantTerm: 84},
			[]summary{
				{"cash-standard", pre, r(30_000, 1_000_000), terms(12, 60)},
				{"cash-insured", pre, r(30_000, 1_000_000), terms(12, 60)},
				{"cash-express", full, r(30_000, 500_000), terms(12, 36)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []summary
			for _, o := range Price(demo(t), tt.search.scored(t)) {
				if o.ProductType != tt.search.product {
					t.Errorf("a %s search got a %s offer", tt.search.product, o.ProductType)
				}
				if err := o.Validate(); err != nil {
					t.Errorf("invalid offer: %v", err)
				}
				got = append(got, summary{offerID(t, o), o.Decision, o.Amount, o.Term})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("offers:\n got %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestPriceWithoutCatalogOrScore(t *testing.T) {
	s := search{product: contracts.ProductLoan, grade: "A", approved: contracts.AmountRange{Min: 1, Max: money.Roubles(100_000)}}
	if got := Price(nil, s.scored(t)); got != nil {
		t.Errorf("Price(nil catalog) = %v", got)
	}
	if got := Price(demo(t), nil); got != nil {
		t.Errorf("Price(nil score) = %v", got)
	}
}

// TestPriceOrder: cheapest ПСК first, and equal costs by product id, whatever the file order.
func TestPriceOrder(t *testing.T) {
	c := &catalog.Catalog{}
	for _, p := range []struct {
		id   string
		rate money.Rate
		fees catalog.Fees
	}{
		{"loan-b", 20_000, catalog.Fees{}},
		{"loan-fee", 18_000, catalog.Fees{Issuance: &catalog.Fee{Percent: money.Percent(5)}}},
		{"loan-a", 20_000, catalog.Fees{}},
		{"loan-cheap", 15_000, catalog.Fees{}},
	} {
		c.Products = append(c.Products, catalog.Product{
			ID: p.id, ProductType: contracts.ProductLoan,
			Amount: contracts.AmountRange{Min: money.Roubles(50_000), Max: money.Roubles(100_000)},
			Term:   &contracts.TermRange{Min: 12, Max: 24},
			Rates:  map[string]contracts.RateRange{"A": {Min: p.rate, Max: p.rate + 1_000}},
			Fees:   p.fees,
			ProposalLink: catalog.LinkTemplate{
				Link: "https://bank.example/apply?offer={product_id}",
			},
		})
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := search{product: contracts.ProductLoan, grade: "A", approved: contracts.AmountRange{Min: 1, Max: money.Roubles(1_000_000)}}
	var ids []string
	var costs []money.Rate
	for _, o := range Price(c, s.scored(t)) {
		ids = append(ids, offerID(t, o))
		costs = append(costs, o.TotalCost.Min)
	}
	// loan-fee: 18 % with 5 % withheld at issue is 23.359 % at 24 months, dearer than 20 %.
	want := []string{"loan-cheap", "loan-a", "loan-b", "loan-fee"}
	if !slices.Equal(ids, want) || costs[3] <= costs[2] {
		t.Errorf("order = %v (costs %v); want %v", ids, costs, want)
	}
}

// TestCostRangeFindsInteriorMaximum shows why the ПСК is scanned over every term when a
// product has fees: with a monthly fee the dearest term is neither end of the range. Here
// (100 000 ₽, 19.9 %, 0.2 % a month) the ПСК is 23.894 % at 6 months, 23.430 % at 60, and
// peaks at 24.057 % at 13 months (mpmath, as in TestFullCost).
func TestCostRangeFindsInteriorMaximum(t *testing.T) {
	p := catalog.Product{
		ID: "insured", ProductType: contracts.ProductLoan,
		Amount: contracts.AmountRange{Min: money.Roubles(100_000), Max: money.Roubles(100_000)},
		Term:   &contracts.TermRange{Min: 6, Max: 60},
		Rates:  map[string]contracts.RateRange{"A": {Min: 19_900, Max: 19_900}},
		Fees:   catalog.Fees{Monthly: &catalog.Fee{Percent: 200}},
		ProposalLink: catalog.LinkTemplate{
			Link: "https://bank.example/apply",
		},
	}
	s := search{product: contracts.ProductLoan, grade: "A", approved: contracts.AmountRange{Min: 1, Max: money.Roubles(1_000_000)}}
	got := Price(&catalog.Catalog{Products: []catalog.Product{p}}, s.scored(t))
	if len(got) != 1 || got[0].TotalCost != (contracts.RateRange{Min: 23_430, Max: 24_057}) {
		t.Fatalf("Price = %s; want total_cost 23.43…24.057", dump(got))
	}
}

// TestPriceProperties prices generated catalogs for generated searches and checks what no
// table can cover: every eligible product is offered (none is dropped by a failed
// Offer.Validate), the ranges hold a granted request, and the payment and ПСК ranges
// contain the value at random points inside the offered ranges.
func TestPriceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var buf []float64
	for round := range 300 {
		c := generateCatalog(t, rng, 10)
		s := randomSearch(rng).scored(t)
		offers := Price(c, s)
		byID := map[string]*catalog.Product{}
		want := 0
		for i := range c.Products {
			p := &c.Products[i]
			byID[p.ID] = p
			if eligible(p, s) {
				want++
			}
		}
		if len(offers) != want {
			t.Fatalf("round %d: %d offers for %d eligible products", round, len(offers), want)
		}
		for i, o := range offers {
			if err := o.Validate(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if i > 0 && offers[i-1].TotalCost.Min > o.TotalCost.Min {
				t.Fatalf("round %d: offers not sorted by total_cost.min", round)
			}
			p := byID[offerID(t, o)]
			checkGrantedRequest(t, p, s, o)
			checkInsideRanges(t, rng, p, o, &buf)
		}
	}
}

// eligible restates Price's rules independently: type, grade, overlapping amount and term.
func eligible(p *catalog.Product, s *contracts.Scored) bool {
	if s.Verdict != contracts.Approved || p.ProductType != s.Request.ProductType {
		return false
	}
	if _, ok := p.Rates[s.Grade]; !ok {
		return false
	}
	if p.Amount.Max < s.Amount.Min || s.Amount.Max < p.Amount.Min {
		return false
	}
	return p.ProductType != contracts.ProductLoan || s.Term == nil || !(p.Term.Max < s.Term.Min || s.Term.Max < p.Term.Min)
}

// checkGrantedRequest: what the client asked for, if approved and sold by the product, is
// inside the offer (spec §4.1's last paragraph).
func checkGrantedRequest(t *testing.T, p *catalog.Product, s *contracts.Scored, o contracts.Offer) {
	t.Helper()
	if a := s.Request.Amount; a != nil && within(*a, s.Amount.Min, s.Amount.Max) && within(*a, p.Amount.Min, p.Amount.Max) &&
		!within(*a, o.Amount.Min, o.Amount.Max) {
		t.Fatalf("%s: granted amount %s outside the offer %+v", p.ID, *a, o.Amount)
	}
	if n := s.Request.Term; n != nil && o.Term != nil && within(*n, p.Term.Min, p.Term.Max) &&
		(s.Term == nil || within(*n, s.Term.Min, s.Term.Max)) && !within(*n, o.Term.Min, o.Term.Max) {
		t.Fatalf("%s: granted term %d outside the offer %+v", p.ID, *n, *o.Term)
	}
}

func within[T int | money.Amount | money.Rate](v, lo, hi T) bool { return lo <= v && v <= hi }

// checkInsideRanges: at random points of the offered box, the payment and the ПСК lie
// within the offer's ranges, so the ranges' ends are the true extremes.
func checkInsideRanges(t *testing.T, rng *rand.Rand, p *catalog.Product, o contracts.Offer, buf *[]float64) {
	t.Helper()
	for range 5 {
		a := o.Amount.Min + money.Amount(rng.Int64N(int64(o.Amount.Max-o.Amount.Min)+1))
		r := o.Rate.Min + money.Rate(rng.Int64N(int64(o.Rate.Max-o.Rate.Min)+1))
		n := CardMonths(p)
		if o.Term != nil {
			n = o.Term.Min + rng.IntN(o.Term.Max-o.Term.Min+1)
			if pay := AnnuityPayment(a, r, n) + monthlyCharge(p, a); !within(pay, *o.Payment.Min, *o.Payment.Max) {
				t.Fatalf("%s: payment %s at (%s, %s, %d) outside %s…%s", p.ID, pay, a, r, n, *o.Payment.Min, *o.Payment.Max)
			}
		}
		cost, err := fullCostOf(p, a, r, n, buf)
		// 0.001 of slack: the ends are exact, but an inner point can round to either side.
		if err != nil || cost < o.TotalCost.Min-1 || cost > o.TotalCost.Max+1 {
			t.Fatalf("%s: ПСК %s, %v at (%s, %s, %d) outside %+v", p.ID, cost, err, a, r, n, o.TotalCost)
		}
	}
}

// generateCatalog makes n valid products of every shape: loans and cards, with and without
// each fee, grades missing at random.
func generateCatalog(t testing.TB, rng *rand.Rand, n int) *catalog.Catalog {
	t.Helper()
	c := &catalog.Catalog{}
	for i := range n {
		p := catalog.Product{
			ID:          fmt.Sprintf("product-%02d", i),
			ProductType: contracts.ProductLoan,
			Decision:    []contracts.OfferDecision{"", contracts.PreApproved, contracts.FullApproved}[rng.IntN(3)],
			Rates:       map[string]contracts.RateRange{},
			ProposalLink: catalog.LinkTemplate{
				Link: "https://bank.example/apply?offer={product_id}",
			},
			RequiredDocuments: []string{"Паспорт РФ"},
		}
		min := money.Roubles(10_000 + rng.Int64N(200_000))
		p.Amount = contracts.AmountRange{Min: min, Max: min + money.Roubles(rng.Int64N(5_000_000))}
		for _, g := range []string{"A", "B", "C"} {
			if rng.IntN(4) > 0 {
				lo := money.Rate(rng.Int64N(int64(money.Percent(40))))
				p.Rates[g] = contracts.RateRange{Min: lo, Max: lo + money.Rate(rng.Int64N(int64(money.Percent(10))))}
			}
		}
		if len(p.Rates) == 0 {
			p.Rates["B"] = contracts.RateRange{Min: money.Percent(25), Max: money.Percent(30)}
		}
		fee := func(maxPercent int64) *catalog.Fee {
			if rng.IntN(2) == 0 {
				return nil
			}
			return &catalog.Fee{Percent: money.Rate(rng.Int64N(int64(money.Percent(maxPercent)))), Fixed: money.Roubles(rng.Int64N(1_000))}
		}
		if rng.IntN(3) == 0 {
			p.ProductType = contracts.ProductCreditCard
			p.GracePeriod, p.MinPayment = 1+rng.IntN(120), money.Rate(1+rng.Int64N(int64(money.Percent(10))))
			p.Fees = catalog.Fees{Issuance: fee(3), Monthly: fee(1), Annual: fee(3)}
		} else {
			lo := 1 + rng.IntN(36)
			p.Term = &contracts.TermRange{Min: lo, Max: lo + rng.IntN(84)}
			p.Fees = catalog.Fees{Issuance: fee(5), Monthly: fee(1)}
		}
		c.Products = append(c.Products, p)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("generated catalog: %v", err)
	}
	return c
}

func randomSearch(rng *rand.Rand) search {
	s := search{
		product:  []contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard}[rng.IntN(2)],
		declined: rng.IntN(10) == 0,
		kind:     []contracts.OfferDecision{contracts.PreApproved, contracts.FullApproved}[rng.IntN(2)],
		grade:    []string{"A", "B", "C", "D"}[rng.IntN(4)],
	}
	min := money.Roubles(1 + rng.Int64N(300_000))
	s.approved = contracts.AmountRange{Min: min, Max: min + money.Roubles(rng.Int64N(3_000_000))}
	if rng.IntN(2) == 0 {
		lo := 1 + rng.IntN(60)
		s.term = &contracts.TermRange{Min: lo, Max: lo + rng.IntN(60)}
	}
	if rng.IntN(2) == 0 {
		s.wantMoney = money.Roubles(1 + rng.Int64N(3_000_000))
	}
	if rng.IntN(2) == 0 {
		s.wantTerm = 1 + rng.IntN(120)
	}
	return s
}

// offerID reads the product id back from the proposal link, which is how an application
// will be attributed, too.
func offerID(t testing.TB, o contracts.Offer) string {
	t.Helper()
	u, err := url.Parse(o.ProposalLink.Link)
	if err != nil {
		t.Fatalf("offer link %q: %v", o.ProposalLink.Link, err)
	}
	return u.Query().Get("offer")
}

func dump(v any) string {
	switch v := v.(type) {
	case []contracts.Offer:
		s := ""
		for _, o := range v {
			s += fmt.Sprintf("\n  %+v term=%+v payment=%s…%s", o, o.Term, deref(o.Payment.Min), deref(o.Payment.Max))
		}
		return s
	case []summary:
		s := ""
		for _, o := range v {
			s += fmt.Sprintf("\n  %s %s %+v term=%+v", o.id, o.decision, o.amount, o.term)
		}
		return s
	}
	return fmt.Sprint(v)
}

func deref(a *money.Amount) string {
	if a == nil {
		return "nil"
	}
	return a.String()
}
