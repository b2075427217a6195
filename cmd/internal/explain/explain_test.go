package explain

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/scoring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// A decision recorded by the real trail (testdata, made by cmd/standalone's
// TestRecordExplainFixture) is explained and replays identical from the revisions it names,
// once the searches bucket has forgotten it: what a support desk does a year on. The same
// batch with one offer's rate altered is reported as differing.
func TestReplayOfARecordedAuditRecord(t *testing.T) {
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	id := strings.TrimSpace(string(read("search-id.txt")))
	batch := read("audit-batch.json")
	for _, tt := range []struct {
		name   string
		batch  []byte
		differ string
	}{
		{"as recorded", batch, ""},
		{"a rate altered", bytes.Replace(batch, []byte(`"rate":{"min":`), []byte(`"rate":{"min":1`), 1), "Rate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.RunServer(t)
			_, js := natstest.JetStream(t, srv.ClientURL())
			ctx := natstest.Context(t, 30*time.Second)
			provisiontest.Defaults(t, js, 1)
			put := func(bucket, key string, bind func() (jetstream.KeyValue, error), data []byte) {
				kv, err := bind()
				if err != nil {
					t.Fatal(err)
				}
				if rev, err := kv.Put(ctx, key, data); err != nil || rev != 1 {
					t.Fatalf("put %s: revision %d, %v", bucket, rev, err)
				}
			}
			put("catalog", offers.CatalogDocument.Key, func() (jetstream.KeyValue, error) { return offers.CatalogDocument.Bind(ctx, js) }, read("catalog.json"))
			put("ceilings", offers.CeilingDocument.Key, func() (jetstream.KeyValue, error) { return offers.CeilingDocument.Bind(ctx, js) }, read("ceilings.json"))
			put("policy", scoring.PolicyDocument.Key, func() (jetstream.KeyValue, error) { return scoring.PolicyDocument.Bind(ctx, js) }, read("policy.json"))
			if _, err := js.Publish(ctx, contracts.SubjectAudit, tt.batch); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			rep, err := Explain(ctx, js, id, time.Time{}, &out)
			if err != nil {
				t.Fatalf("Explain: %v\n%s", err, out.String())
			}
			if !strings.Contains(rep.Source, "audit trail") || !rep.Scoring.Done || !rep.Pricing.Done || len(rep.Scoring.Diffs) > 0 {
				t.Fatalf("source %q, scoring %s, pricing %s\n%s", rep.Source, rep.Scoring, rep.Pricing, out.String())
			}
			diffs := strings.Join(rep.Pricing.Diffs, "\n")
			if tt.differ == "" && diffs != "" || tt.differ != "" && !strings.Contains(diffs, tt.differ) {
				t.Fatalf("pricing differences %q, want %q\n%s", diffs, tt.differ, out.String())
			}
		})
	}
}
