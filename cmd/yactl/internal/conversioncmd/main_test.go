package conversioncmd

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/offerlink"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/services/conversions"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const opsToken, intakeToken = "ops-test-token", "intake-test-token"

func ctl(t *testing.T, base, token string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"CONVERSIONS_URL": base, "OPS_TOKEN": token}
	err := Run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), err
}

// service runs the conversions service on a provisioned server, as yactl finds it, and
// returns its internal address and its store.
func service(t *testing.T) (string, *conversions.Store) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	provisiontest.Defaults(t, js, 1)
	key, err := offerlink.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := offerlink.NewKeySet(key).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	addr := natstest.FreeAddr(t)
	env := map[string]string{"NATS_URL": srv.ClientURL(), "CONVERSIONS_ADDR": addr, "LINK_KEYS": string(keys),
		"INTAKE_TOKENS": intakeToken, "OPS_TOKENS": opsToken}
	cfg, err := conversions.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- conversions.Run(ctx, cfg, conversions.Deps{JS: js, Log: zerolog.Nop()}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the conversions service: %v", err)
		}
	})
	store, err := conversions.BindStore(natstest.Context(t, 10*time.Second), js)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	natstest.Eventually(t, 10*time.Second, func() error { _, err := ctl(t, base, opsToken, "list"); return err })
	return base, store
}

// The operators' commands go through the conversions service, with an operator's token:
// what it lists, exports and queues again is what the bucket holds, and nobody writes to
// the bucket but the service.
func TestListExportRetry(t *testing.T) {
	base, store := service(t)
	ctx := natstest.Context(t, 20*time.Second)
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

	out, err := ctl(t, base, opsToken, "list")
	if err != nil || strings.Count(out, "\n") != 4 || !strings.Contains(out, "400 unknown offer_id") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = ctl(t, base, opsToken, "list", "-state", "failed")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, failedID) {
		t.Fatalf("list -state failed: %v\n%s", err, out)
	}
	out, err = ctl(t, base, opsToken, "export", "-state", "queued")
	rows, cerr := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || cerr != nil || len(rows) != 2 || strings.Join(rows[0], ",") !=
		"request_id,offer_id,amount,additional_services,contract_date,state" ||
		rows[1][0] != "e2b4948b-7d8a-4eec-875c-000000000001" || rows[1][2] != "300000" || rows[1][5] != "queued" {
		t.Fatalf("export: %v %v\n%s", err, cerr, out)
	}
	if out, err = ctl(t, base, opsToken, "retry", "-failed"); err != nil || !strings.Contains(out, failedID+": queued again") {
		t.Fatalf("retry -failed: %v\n%s", err, out)
	}
	if c, _, err := store.Get(ctx, failedID); err != nil || c.State != contracts.ConversionQueued {
		t.Fatalf("after retry: %+v %v", c, err)
	}
	if _, err := ctl(t, base, opsToken, "retry", "e2b4948b-7d8a-4eec-875c-000000000003.cash-standard"); err == nil ||
		!strings.Contains(err.Error(), "is delivered") {
		t.Fatalf("retry of a delivered one: %v", err)
	}
	// Another role's token, or none, is refused by the service.
	for _, token := range []string{intakeToken, ""} {
		if _, err := ctl(t, base, token, "retry", "-failed"); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("retry with token %q: %v, want the service's 401", token, err)
		}
	}
	for _, args := range [][]string{nil, {"list", "-state", "lost"}, {"retry"}, {"retry", "-failed", "x"}, {"list", "x"}} {
		if _, err := ctl(t, base, opsToken, args...); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%q: %v, want the usage", args, err)
		}
	}
}
