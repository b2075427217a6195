package catalog_test

import (
	"errors"
	"fmt"

	"github.com/demobank/yacredits/services/offers/catalog"
)

// A catalog with one cash loan and one credit card: the smallest useful file.
func ExampleParse() {
	c, err := catalog.Parse([]byte(`{
	  "products": [
	    {
	      "id": "cash-insured",
	      "product_type": "loan",
	      "amount": {"min": 30000, "max": 3000000},
	      "term": {"min": 12, "max": 60},
	      "rates": {"A": {"min": 19.9, "max": 21.9}, "B": {"min": 21.9, "max": 24.9}},
	      "fees": {"monthly": {"percent": 0.2}},
	      "special_conditions": ["Ставка действует при подключении страхования"],
	      "required_documents": ["Паспорт РФ"],
	      "proposal_link": {"link": "https://bank.example/apply?offer={product_id}"}
	    },
	    {
	      "id": "card-120",
	      "product_type": "credit_card",
	      "decision": "pre_approved",
	      "amount": {"min": 10000, "max": 1000000},
	      "rates": {"A": {"min": 29.9, "max": 34.9}},
	      "fees": {"annual": {"fixed": 990}},
	      "grace_period": 120,
	      "min_payment": 3,
	      "proposal_link": {"deep": "demobank://card"}
	    }
	  ]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range c.Products {
		fmt.Printf("%s: %s, %s–%s ₽, grade A %s–%s %%\n",
			p.ID, p.ProductType, p.Amount.Min, p.Amount.Max, p.Rates["A"].Min, p.Rates["A"].Max)
	}
	fmt.Println(c.Products[0].Fees.Monthly.Charge(3_000_000)) // 0.2 % of 30 000 ₽, in kopecks in and out
	fmt.Println(c.Products[1].ProposalLink.Expand("e2b4948b-7d8a-4eec-875c-b1c11d7d8372", "card-120").Deep)
	// Output:
	// cash-insured: loan, 30000–3000000 ₽, grade A 19.9–21.9 %
	// card-120: credit_card, 10000–1000000 ₽, grade A 29.9–34.9 %
	// 60
	// demobank://card
}

// A refused catalog names every problem, each with its product and field.
func ExampleValidationError() {
	_, err := catalog.Parse([]byte(`{
	  "products": [
	    {
	      "id": "cash-standard",
	      "product_type": "loan",
	      "amount": {"min": 30000, "max": 5000000},
	      "rates": {"A": {"min": 19.9, "max": 22.9}, "B": {"min": 30, "max": 25}},
	      "proposal_link": {"link": "https://bank.example/apply"}
	    }
	  ]
	}`))
	var ve *catalog.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Println(p)
		}
	}
	// Output:
	// product "cash-standard": term: a loan needs one
	// product "cash-standard": rates["B"]: min 30 > max 25
}
