package explain

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// A pre-approval's last day is printed as the Moscow date it is, whatever zone the record
// kept it in: 00:00 Moscow time on 31 December is 21:00 UTC on the 30th.
func TestTrailPrintsThePreapprovalsLastDayInMoscow(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	amount, term := money.Roubles(500000), 36
	rec := &contracts.Search{
		Request: contracts.LoanRequested{SearchID: "e2b4948b-7d8a-4eec-875c-b1c11d7d8372", PhoneHash: strings.Repeat("ab", 32),
			ProductType: contracts.ProductLoan, Amount: &amount, Term: &term, RequestedAt: at},
		DoneAt: &at,
		Basis: &contracts.Basis{ScoreBasis: contracts.ScoreBasis{Row: &contracts.PreapprovalRow{Kind: contracts.PreApproved,
			Limit: money.Roubles(1000000), Grade: "A", ValidUntil: time.Date(2026, 12, 30, 21, 0, 0, 0, time.UTC)}},
			Verdict: contracts.Declined},
	}
	var out bytes.Buffer
	writeTrail(&out, rec, "the searches bucket")
	if !strings.Contains(out.String(), "valid until 2026-12-31\n") {
		t.Errorf("the row's last day is not 2026-12-31:\n%s", out.String())
	}
}
