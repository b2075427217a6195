package catalogcmd

import (
	"fmt"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/scoring/policy"
)

// Coverage lists what the credit policy approves that no catalog product of its type sells:
// a product type with no product at all, and the loan terms no loan product offers. Such an
// approval reaches pricing and ends without an offer (no_matching_offer), so the bank learns
// of it here rather than from missing offers.
func Coverage(p *policy.Policy, c *catalog.Catalog) []string {
	var out []string
	for _, pt := range []contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard} {
		pp := p.Product(pt)
		if pp == nil {
			continue
		}
		sold := map[int]bool{}
		any := false
		for _, prod := range c.Products {
			if prod.ProductType != pt {
				continue
			}
			any = true
			if prod.Term != nil {
				for n := prod.Term.Min; n <= prod.Term.Max; n++ {
					sold[n] = true
				}
			}
		}
		if !any {
			out = append(out, fmt.Sprintf("the policy approves %s, which no catalog product sells", pt))
			continue
		}
		if pp.Term == nil {
			continue
		}
		for n := pp.Term.Min; n <= pp.Term.Max; n++ {
			if sold[n] {
				continue
			}
			end := n
			for end+1 <= pp.Term.Max && !sold[end+1] {
				end++
			}
			out = append(out, fmt.Sprintf("the policy approves %s terms of %d–%d months, which no %s product sells", pt, n, end, pt))
			n = end
		}
	}
	return out
}
