package pricing_test

import (
	"fmt"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/offers/pricing"
)

// The textbook annuity: 100 000 ₽ at 12 % a year for 12 months.
func ExampleAnnuityPayment() {
	fmt.Println(pricing.AnnuityPayment(money.Roubles(100_000), money.Percent(12), 12))
	// Output: 8884.88
}

// The same loan with a 2 % issuance fee: the client receives 98 000 ₽ but repays as for
// 100 000 ₽, so the full cost of credit is well above the 12 % rate.
func ExampleFullCost() {
	flows := []pricing.CashFlow{{Period: 0, Amount: -100_000}, {Period: 0, Amount: 2_000}}
	for month := 1; month <= 12; month++ {
		flows = append(flows, pricing.CashFlow{Period: month, Amount: 8_884.88})
	}
	cost, err := pricing.FullCost(flows)
	fmt.Println(cost, err)
	// Output: 15.855 <nil>
}

// The spec's example search, priced on the demo catalog.
func ExamplePrice() {
	c, err := catalog.Demo()
	if err != nil {
		fmt.Println(err)
		return
	}
	amount, term := money.Roubles(500_000), 36
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := &contracts.Scored{
		Request: contracts.LoanRequested{
			SearchID:    "e2b4948b-7d8a-4eec-875c-b1c11d7d8372",
			ProductType: contracts.ProductLoan,
			Amount:      &amount,
			Term:        &term,
			RequestedAt: at,
		},
		Verdict:  contracts.Approved,
		Kind:     contracts.PreApproved,
		Amount:   &contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(1_000_000)},
		Grade:    "A",
		ScoredAt: at,
	}
	for _, o := range pricing.Price(c, s) {
		fmt.Printf("%s %s–%s ₽, %d–%d months, rate %s–%s %%, ПСК %s–%s %%, payment %s–%s ₽\n",
			o.Decision, o.Amount.Min, o.Amount.Max, o.Term.Min, o.Term.Max, o.Rate.Min, o.Rate.Max,
			o.TotalCost.Min, o.TotalCost.Max, o.Payment.Min, o.Payment.Max)
	}
	// Output:
	// pre_approved 30000–1000000 ₽, 12–60 months, rate 21.9–24.9 %, ПСК 21.9–24.9 %, payment 826.86–94995.68 ₽
	// pre_approved 30000–1000000 ₽, 12–60 months, rate 19.9–21.9 %, ПСК 23.43–26.033 %, payment 853.15–95546.26 ₽
	// full_approved 30000–500000 ₽, 12–36 months, rate 22.9–25.9 %, ПСК 24.176–35.667 %, payment 1159.73–47740.74 ₽
}
