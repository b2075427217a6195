package yandex

import (
	"math/rand/v2"
	"sync"

	"github.com/google/uuid"
)

// demoClients are the demo data's clients (services/scoring/demo_preapprovals.csv): who asks
// for what, how often, and whether the bank's data approve it.
var demoClients = []struct {
	weight      int
	body        string
	preApproved bool
}{
	{40, `"phone_number":"9330445040","product_type":"loan","amount":500000.00,"term":36`, true},
	{25, `"phone_number":"+7 933 044-50-40","product_type":"credit_card"`, true},
	{20, `"phone_number":"8 (916) 123-45-67","product_type":"loan","amount":300000,"term":24`, true},
	{15, `"phone_number":"9001112233","product_type":"loan","amount":100000,"term":12`, false},
}

// DemoRequests returns a maker of new searches (a fresh search_id each) for the demo data's
// clients, in a fixed mix drawn from seed: 85 % pre-approved, 15 % unknown to the bank.
func DemoRequests(seed uint64) func(int) Request {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 0xde70))
	return func(int) Request {
		mu.Lock()
		n := r.IntN(100)
		mu.Unlock()
		c := demoClients[len(demoClients)-1]
		for _, c = range demoClients {
			if n -= c.weight; n < 0 {
				break
			}
		}
		id := uuid.NewString()
		return Request{SearchID: id, PreApproved: c.preApproved,
			Body: []byte(`{"search_id":"` + id + `",` + c.body + `,"props":["yandex"]}`)}
	}
}
