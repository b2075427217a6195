package catalogcmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/services/offers/catalog"
	"github.com/demobank/yacredits/services/scoring/policy"
)

// A table whose card ceiling this quarter (and the next, which a link made late in a
// quarter reaches) is 40 %: the demo catalog's cards reach higher.
func strictTable(t *testing.T) string {
	t.Helper()
	var quarters []string
	now := time.Now().In(time.FixedZone("MSK", 3*60*60))
	for _, at := range []time.Time{now, now.AddDate(0, 3, 0)} {
		q := fmt.Sprintf("%d-Q%d", at.Year(), (int(at.Month())+2)/3)
		quarters = append(quarters, `{"quarter": "`+q+`", "source": "test values", "categories": [
			{"row": "1", "product_type": "credit_card", "amount_over": 0, "amount_up_to": 0, "average": 30, "limit": 40}]}`)
	}
	return write(t, "strict.json", `{"version": 1, "quarters": [`+strings.Join(quarters, ",")+`]}`)
}

func write(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The policy and the ceiling table are put, read back and refused like the catalog; a
// catalog above a category's ceiling in force is refused; what one document means for the
// others in force is said when it is put.
func TestPolicyAndCeilings(t *testing.T) {
	srv := provisionedServer(t)
	url := srv.ClientURL()
	f := writeFiles(t)
	policyFile := write(t, "policy.json", string(policy.DefaultJSON()))
	wide := write(t, "wide.json", strings.Replace(string(policy.DefaultJSON()), `"term": {"min": 12, "max": 60}`, `"term": {"min": 3, "max": 84}`, 1))
	badPolicy := write(t, "bad.json", `{"version": 2}`)
	badTable := write(t, "badtable.json", `{"version": 1, "quarters": [{"quarter": "2026-Q4", "source": "", "categories": []}]}`)
	table := strictTable(t)

	steps := []struct {
		name       string
		args       []string
		wantErr    string
		wantStdout []string
		wantStderr []string
	}{
		{"validate the policy", []string{"policy", "validate", policyFile}, "", []string{"valid, valid policy"}, nil},
		{"an invalid policy", []string{"policy", "validate", badPolicy}, "refused", nil, []string{"version 2 is not supported"}},
		{"put the policy", []string{"policy", "put", policyFile}, "", []string{"put as revision 1"}, nil},
		{"a policy approving terms no product sells: put, with a warning", []string{"policy", "put", wide}, "",
			[]string{"put as revision 2"}, []string{"warning: the policy approves loan terms of 3–11 months, which no loan product sells",
				"warning: the policy approves loan terms of 61–84 months"}},
		{"get the first policy back", []string{"policy", "get", "1"}, "", []string{`"version": 1`}, []string{"revision 1, put"}},
		{"an invalid table", []string{"ceilings", "put", badTable}, "refused, 1 problem(s)", nil, []string{"source is empty"}},
		{"put the demo catalog", []string{"put", f.demo}, "", []string{"put as revision 1, 5 products"}, nil},
		{"a table the catalog in force exceeds: put, with a warning", []string{"ceilings", "put", table}, "",
			[]string{"put as revision 1, 2 quarters"}, []string{"warning: the catalog in force: product \"card-classic\" grade"}},
		{"a catalog above the ceiling in force: refused", []string{"put", f.cheaper}, "problem(s) with the documents in force", nil,
			[]string{"above its category's ceiling of 40 %"}},
		{"validate alone knows only 292 %", []string{"validate", f.cheaper}, "", []string{"valid, 5 products"}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			runCtl(t, url, st.args...).check(t, st.wantErr, st.wantStdout, st.wantStderr)
		})
	}
}

// Coverage names each run of loan terms the policy approves and no product sells, and a
// product type with no product at all.
func TestCoverage(t *testing.T) {
	c, err := catalog.Parse(catalog.DemoJSON())
	if err != nil {
		t.Fatal(err)
	}
	if got := Coverage(policy.Default(), c); len(got) != 0 {
		t.Errorf("the default policy against the demo catalog: %q, want nothing", got)
	}
	loansOnly := &catalog.Catalog{}
	for _, p := range c.Products {
		if p.ProductType == "loan" {
			loansOnly.Products = append(loansOnly.Products, p)
		}
	}
	wide, err := policy.Parse([]byte(strings.Replace(string(policy.DefaultJSON()), `"term": {"min": 12, "max": 60}`, `"term": {"min": 1, "max": 61}`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(Coverage(wide, loansOnly), "\n")
	for _, want := range []string{"loan terms of 1–11 months", "loan terms of 61–61 months", "approves credit_card, which no catalog product sells"} {
		if !strings.Contains(got, want) {
			t.Errorf("coverage %q lacks %q", got, want)
		}
	}
}
