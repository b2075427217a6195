package conversioncmd

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/services/conversions"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctl(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, func(k string) string {
		if k == "NATS_URL" {
			return url
		}
		return ""
	}, &out, &errOut)
	return out.String(), err
}

func TestListExportRetry(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 20*time.Second)
	provisiontest.Defaults(t, js, 1)
	store, err := conversions.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	term := 24
	for i, state := range []contracts.ConversionState{contracts.ConversionQueued, contracts.ConversionFailed, contracts.ConversionDelivered} {
		id := "e2b4948b-7d8a-4eec-875c-00000000000" + string(rune('1'+i))
		c := &contracts.Conversion{ID: id + ".cash-standard", SearchID: id, Offer: "cash-standard", ProductType: contracts.ProductLoan,
			ContractDate: "2026-12-01", Amount: money.Roubles(300_000), Term: &term, State: contracts.ConversionQueued, ReportedAt: time.Now()}
		if _, _, err := store.Record(ctx, c); err != nil {
			t.Fatal(err)
		}
		if state != contracts.ConversionQueued {
			if _, err := store.Update(ctx, c.ID, func(c *contracts.Conversion) *contracts.Conversion {
				next := *c
				next.State, next.LastError = state, "400 unknown offer_id"
				return &next
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	const failedID = "e2b4948b-7d8a-4eec-875c-000000000002.cash-standard"

	out, err := ctl(t, srv.ClientURL(), "list")
	if err != nil || strings.Count(out, "\n") != 4 || !strings.Contains(out, "400 unknown offer_id") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = ctl(t, srv.ClientURL(), "list", "-state", "failed")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, failedID) {
		t.Fatalf("list -state failed: %v\n%s", err, out)
	}
	out, err = ctl(t, srv.ClientURL(), "export", "-state", "queued")
	rows, cerr := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || cerr != nil || len(rows) != 2 || strings.Join(rows[0], ",") !=
		"request_id,offer_id,amount,additional_services,contract_date,state" ||
		rows[1][0] != "e2b4948b-7d8a-4eec-875c-000000000001" || rows[1][2] != "300000" || rows[1][5] != "queued" {
		t.Fatalf("export: %v %v\n%s", err, cerr, out)
	}
	if out, err = ctl(t, srv.ClientURL(), "retry", "-failed"); err != nil || !strings.Contains(out, failedID+": queued again") {
		t.Fatalf("retry -failed: %v\n%s", err, out)
	}
	if c, _, err := store.Get(ctx, failedID); err != nil || c.State != contracts.ConversionQueued {
		t.Fatalf("after retry: %+v %v", c, err)
	}
	if _, err := ctl(t, srv.ClientURL(), "retry", "e2b4948b-7d8a-4eec-875c-000000000003.cash-standard"); err == nil ||
		!strings.Contains(err.Error(), "is delivered, not failed") {
		t.Fatalf("retry of a delivered one: %v", err)
	}
	for _, args := range [][]string{nil, {"list", "-state", "lost"}, {"retry"}, {"retry", "-failed", "x"}, {"list", "x"}} {
		if _, err := ctl(t, srv.ClientURL(), args...); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%q: %v, want the usage", args, err)
		}
	}
}
