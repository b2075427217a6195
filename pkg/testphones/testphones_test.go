package testphones

import (
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

func hasher(t *testing.T) *phone.Hasher {
	t.Helper()
	h, err := phone.NewHasher([]byte(strings.Repeat("k", phone.MinKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sum(t *testing.T, h *phone.Hasher, s string) [32]byte {
	t.Helper()
	n, err := phone.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum(n)
}

// The demo file, as the standalone binary uses it and the README's table lists it.
func TestDemo(t *testing.T) {
	h := hasher(t)
	s, err := Parse(Demo(), h)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 5 {
		t.Fatalf("Len = %d, want 5", s.Len())
	}
	approved := s.Lookup(sum(t, h, "9000000001")) // any spelling of the number
	if approved == nil || !approved.Approves(contracts.ProductLoan) || !approved.Approves(contracts.ProductCreditCard) ||
		approved.Grade != "A" || approved.Limit != money.Roubles(1000000) || approved.Kind != contracts.PreApproved {
		t.Fatalf("+79000000001 = %+v", approved)
	}
	if p := s.Lookup(sum(t, h, "+7 900 000-00-02")); p == nil || p.Outcome != Reject || p.Approves(contracts.ProductLoan) {
		t.Fatalf("+79000000002 = %+v", p)
	}
	if p := s.Lookup(sum(t, h, "89000000003")); p == nil || p.Delay != 3*time.Second || p.Masked != "+7******0003" {
		t.Fatalf("+79000000003 = %+v", p)
	}
	if p := s.Lookup(sum(t, h, "9000000004")); p == nil || p.Outcome != Deadline {
		t.Fatalf("+79000000004 = %+v", p)
	}
	if p := s.Lookup(sum(t, h, "9000000005")); p == nil || p.Kind != contracts.FullApproved || p.Approves(contracts.ProductCreditCard) {
		t.Fatalf("+79000000005 = %+v", p)
	}
	if s.Lookup(sum(t, h, "9330445040")) != nil {
		t.Fatal("a phone not in the file is a test phone")
	}
	var none *Set
	if none.Lookup(sum(t, h, "9000000001")) != nil || none.Len() != 0 {
		t.Fatal("no file, yet a test phone")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"not a phone", `{"phones":[{"phone":"12","outcome":"reject"}]}`, "phones[0]: phone"},
		{"unknown outcome", `{"phones":[{"phone":"9000000001","outcome":"maybe"}]}`, `"maybe" is not approve`},
		{"approve without grade and limit", `{"phones":[{"phone":"9000000001","outcome":"approve"}]}`, "grade: an approved phone"},
		{"approve without limit", `{"phones":[{"phone":"9000000001","outcome":"approve","grade":"A"}]}`, "limit: an approved phone"},
		{"bad product", `{"phones":[{"phone":"9000000001","outcome":"approve","grade":"A","limit":1,"products":["mortgage"]}]}`, `"mortgage"`},
		{"bad kind", `{"phones":[{"phone":"9000000001","outcome":"approve","grade":"A","limit":1,"kind":"maybe"}]}`, "kind:"},
		{"terms on a rejection", `{"phones":[{"phone":"9000000001","outcome":"reject","grade":"A"}]}`, "belong to an approved phone"},
		{"delay too long", `{"phones":[{"phone":"9000000001","outcome":"reject","delay":"5s"}]}`, "outside 0…3s"},
		{"delay on a deadline", `{"phones":[{"phone":"9000000001","outcome":"deadline","delay":"1s"}]}`, "nothing to delay"},
		{"listed twice", `{"phones":[{"phone":"9000000001","outcome":"reject"},{"phone":"+79000000001","outcome":"deadline"}]}`, "listed twice"},
		{"unknown field", `{"phones":[{"phone":"9000000001","outcome":"reject","colour":"red"}]}`, "colour"},
		{"every problem at once", `{"phones":[{"phone":"12","outcome":"reject"},{"phone":"9000000001","outcome":"maybe"}]}`, "phones[1]: outcome"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), hasher(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
