package pricing

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/ceiling"
)

// BenchmarkPrice prices one search against generated catalogs. Every generated product has
// grade B, and the search approves a wide range, so most products of the asked type are
// priced; loans with fees dominate, since their ПСК is solved for every term of the range.
//
//	go test ./services/offers/pricing -run '^$' -bench BenchmarkPrice -benchmem
func BenchmarkPrice(b *testing.B) {
	for _, n := range []int{5, 50} {
		for _, product := range []contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard} {
			rng := rand.New(rand.NewPCG(uint64(n), 9))
			c := generateCatalog(b, rng, n)
			for i := range c.Products {
				c.Products[i].Rates["B"] = contracts.RateRange{Min: money.Percent(20), Max: money.Percent(30)}
			}
			s := search{product: product, grade: "B", wantMoney: money.Roubles(500_000), wantTerm: 36,
				approved: contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(5_000_000)}}
			scored := s.scored(b)
			offered := len(Price(c, scored))
			b.Run(fmt.Sprintf("products=%d/type=%s", n, product), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					Price(c, scored)
				}
				b.ReportMetric(float64(offered), "offers/op")
			})
		}
	}
}

// BenchmarkPriceDemo prices what the standalone prices: a loan search of grade B against the
// demo catalog (three loans, two with fees) under the built-in ceiling table.
//
//	go test ./services/offers/pricing -run '^$' -bench PriceDemo -benchmem
func BenchmarkPriceDemo(b *testing.B) {
	c, err := catalog.Demo()
	if err != nil {
		b.Fatal(err)
	}
	t, err := ceiling.Parse(ceiling.DefaultJSON())
	if err != nil {
		b.Fatal(err)
	}
	s := search{product: contracts.ProductLoan, grade: "B", wantMoney: money.Roubles(300_000), wantTerm: 24,
		approved: contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)}}
	scored := s.scored(b)
	at := scored.ScoredAt
	lim := t.Between(at, at.Add(30*24*time.Hour))
	offered := len(Quotes(c, scored, lim).Quotes)
	b.ReportAllocs()
	for b.Loop() {
		Quotes(c, scored, lim)
	}
	b.ReportMetric(float64(offered), "offers/op")
}
