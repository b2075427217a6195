package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/demobank/yacredits/cmd/internal/explain"
	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/services/offers/audit"
	"github.com/demobank/yacredits/services/offers/catalog"
)

// Searches decided by the real binary are explained and replay byte-identically from the
// recorded revisions, also after the catalog changed and after the record left the bucket
// (from the audit trail); a record whose offers were altered is reported as differing. No
// output holds the raw phone.
func TestExplainAndReplay(t *testing.T) {
	natsAddr := natstest.FreeAddr(t)
	sys := startSystem(t, t.TempDir(), map[string]string{"NATS_LISTEN": natsAddr})
	_, js := natstest.JetStream(t, "nats://"+natsAddr)
	ctx := natstest.Context(t, 60*time.Second)

	ids := map[string]string{}
	for _, c := range []struct{ name, phone, product, decision string }{
		{"loan", "9330445040", "loan", "has_approve"},
		{"card", "9330445040", "credit_card", "has_approve"},
		{"unknown", "9990000000", "loan", "rejected"},
		// A test phone is decided from its fixed outcome as from a row: it replays too.
		{"test phone", "9000000001", "loan", "has_approve"},
	} {
		id := uuid.NewString()
		status, body := sys.call(t, "POST", path, request(id, c.phone, c.product))
		if status != 200 || body["status"] != "done" || body["decision"] != c.decision {
			t.Fatalf("%s: POST = %d %v", c.name, status, body)
		}
		ids[c.name] = id
	}
	explained := func(t *testing.T, id string) (*explain.Report, string) {
		t.Helper()
		var out bytes.Buffer
		rep, err := explain.Explain(ctx, js, id, time.Time{}, &out)
		if err != nil {
			t.Fatalf("Explain(%s): %v", id, err)
		}
		if s := out.String(); strings.Contains(s, "9330445040") || strings.Contains(s, "9990000000") {
			t.Fatalf("the explanation holds a raw phone:\n%s", s)
		}
		return rep, out.String()
	}
	identical := func(t *testing.T, rep *explain.Report, out string) {
		t.Helper()
		if !rep.Scoring.Done || len(rep.Scoring.Diffs) > 0 || !rep.Pricing.Done || len(rep.Pricing.Diffs) > 0 {
			t.Fatalf("replay: scoring %s, pricing %s\n%s", rep.Scoring, rep.Pricing, out)
		}
	}
	for name, id := range ids {
		t.Run(name, func(t *testing.T) {
			rep, out := explained(t, id)
			identical(t, rep, out)
			if !strings.Contains(rep.Source, "searches bucket") || !strings.Contains(out, "policy revision 1") ||
				!strings.Contains(out, "catalog revision 1") {
				t.Errorf("explanation:\n%s", out)
			}
			switch name {
			case "loan":
				for _, want := range []string{"pre-approval row: pre_approved", "cash-standard", "offered", "ПСК", "+7******5040"} {
					if !strings.Contains(out, want) {
						t.Errorf("explanation lacks %q:\n%s", want, out)
					}
				}
			case "test phone":
				if !strings.Contains(out, "(a test phone)") || !strings.Contains(out, "pre-approval snapshot "+contracts.SnapshotTestPhones) {
					t.Errorf("explanation:\n%s", out)
				}
			case "unknown":
				if !strings.Contains(out, "no pre-approval row") || !strings.Contains(out, "verdict declined") {
					t.Errorf("explanation:\n%s", out)
				}
			}
		})
	}

	// A new catalog does not change how a past search replays: its revision is recorded.
	cat, err := js.KeyValue(ctx, contracts.BucketCatalog)
	if err != nil {
		t.Fatal(err)
	}
	cheaper := strings.Replace(string(catalog.DemoJSON()), `"A": {"min": 21.9, "max": 24.9}`, `"A": {"min": 11.9, "max": 12.9}`, 1)
	if _, err := cat.Put(ctx, contracts.CatalogKey, []byte(cheaper)); err != nil {
		t.Fatal(err)
	}
	rep, out := explained(t, ids["loan"])
	identical(t, rep, out)

	// An altered record is caught.
	kv, err := bus.BindLeaderRead(ctx, js, contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, ids["card"])
	if err != nil {
		t.Fatal(err)
	}
	rec, err := contracts.DecodeSearch(ids["card"], e.Value())
	if err != nil {
		t.Fatal(err)
	}
	offers, _ := contracts.DecodeOffers(rec.Offers)
	offers[0].Rate.Max++
	rec.Offers, _ = contracts.EncodeOffers(offers)
	data, _ := contracts.EncodeSearch(rec)
	if _, err := kv.Update(ctx, ids["card"], data, e.Revision()); err != nil {
		t.Fatal(err)
	}
	rep, out = explained(t, ids["card"])
	if got := strings.Join(rep.Pricing.Diffs, "\n"); !strings.Contains(got, "offer 1 Rate") {
		t.Fatalf("an altered rate replays as %s\n%s", rep.Pricing, out)
	}

	// After the bucket forgot it, the audit trail still explains it.
	natstest.Eventually(t, 20*time.Second, func() error {
		_, _, err := audit.Find(ctx, js, ids["loan"], time.Time{})
		return err
	})
	if err := kv.Purge(ctx, ids["loan"]); err != nil {
		t.Fatal(err)
	}
	rep, out = explained(t, ids["loan"])
	identical(t, rep, out)
	if !strings.Contains(rep.Source, "audit trail") || !strings.Contains(out, "phone not kept") {
		t.Errorf("from the trail:\n%s", out)
	}
}
