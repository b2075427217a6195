package policy

import (
	"errors"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// Whatever the file says, Parse returns a policy or an *InvalidError, never a panic; and a
// policy it accepts decides every request with a verdict the message contract accepts, for
// a client with no pre-approval, an expired one or a valid one of either kind.
func FuzzParse(f *testing.F) {
	f.Add(defaultJSON)
	f.Add([]byte(`{"loan":{}}`))
	f.Add([]byte(`{"loan":{"grades":{"A":1,"A":2}}}`))
	f.Add([]byte("{\"loan\":\"\xff\"}"))
	valid := now.Add(30 * 24 * time.Hour)
	lapsed := now.Add(-48 * time.Hour)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var invalid *InvalidError
			if p != nil || !errors.As(err, &invalid) || len(invalid.Problems) == 0 {
				t.Fatalf("Parse = %v, %v; want no policy and an *InvalidError naming a problem", p, err)
			}
			return
		}
		for _, product := range []contracts.ProductType{contracts.ProductLoan, contracts.ProductCreditCard} {
			for _, rec := range []*preapproval.Record{
				nil,
				record(product, contracts.PreApproved, 300000, "A", valid),
				record(product, contracts.FullApproved, 50000, "C", valid),
				record(product, contracts.PreApproved, 300000, "B", lapsed),
			} {
				for _, req := range []contracts.LoanRequested{
					request(product, 0, 0), request(product, 100000, 12), request(product, 5000000, 360),
				} {
					if _, err := contracts.NewScored(Decide(p, rec, req, now)); err != nil {
						t.Fatalf("accepted policy %s decides %+v with %+v into an invalid verdict: %v", data, req, rec, err)
					}
				}
			}
		}
	})
}
