package preapprovalcmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/services/scoring/policy"
	"github.com/demobank/yacredits/services/scoring/preapproval"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	goleak.VerifyTestMain(m)
}

const testKey = "preapprovals-test-key-0123456789abcdef"

// imp runs the real command line against a store, as an operator would.
type imp struct {
	t   *testing.T
	url string
	js  jetstream.JetStream
}

func newImp(t *testing.T) *imp {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	provisiontest.Defaults(t, js, 1)
	return &imp{t: t, url: srv.ClientURL(), js: js}
}

func (c *imp) env(extra ...string) func(string) string {
	vars := map[string]string{"NATS_URL": c.url, "PHONE_HASH_KEY": testKey}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	return func(k string) string { return vars[k] }
}

func (c *imp) Run(getenv func(string) string, args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err = Run(natstest.Context(c.t, time.Minute), args, getenv, &out, &errOut)
	return out.String(), errOut.String(), err
}

// object returns the stored snapshot's info and index.
func (c *imp) object() (*jetstream.ObjectInfo, *preapproval.Index) {
	c.t.Helper()
	ctx := natstest.Context(c.t, time.Minute)
	obs, err := snapshotstore.Open(ctx, c.js)
	if err != nil {
		c.t.Fatal(err)
	}
	ix, info, err := obs.Load(ctx, contracts.PreapprovalsObject, hasher(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	return info, ix
}

func hasher(t testing.TB) *phone.Hasher {
	h, err := phone.NewHasher([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The clients of the tests. A is approved throughout; B is dropped from the newer export;
// C expires in it.
const (
	phoneA = "9330445040"
	phoneB = "9161234567"
	phoneC = "9261234567"
)

const v1 = `phone,product_type,decision,limit,grade,valid_until
9330445040,loan,pre_approved,1000000,A,2099-12-31
9161234567,loan,full_approved,500000,B,2099-12-31
9261234567,loan,pre_approved,700000,A,2099-12-31
9001112233,mortgage,pre_approved,100000,A,2099-12-31
+7 (999) 000-11-22,loan,pre_approved,-5,A,2099-12-31
12345,loan,pre_approved,100000,A,2099-12-31
`

// v1 again as another bank system would write it: other phone spellings, CRLF, columns in
// another order, no bad rows. The same records, so the same content.
const v1Respelled = "valid_until,phone,product_type,decision,limit,grade\r\n" +
	"2099-12-31,+7 933 044-50-40,loan,pre_approved,1000000.00,A\r\n" +
	"2099-12-31,8 (916) 123-45-67,loan,full_approved,500000,B\r\n" +
	"2099-12-31,+79261234567,loan,pre_approved,700000,A\r\n"

const v2 = `phone,product_type,decision,limit,grade,valid_until
9330445040,loan,pre_approved,1200000,A,2099-12-31
9261234567,loan,pre_approved,700000,A,2020-01-31
`

// decide is the policy's answer for the phone's loan in ix, the shipped default policy.
func decide(t *testing.T, ix *preapproval.Index, number string) contracts.Scored {
	t.Helper()
	n, err := phone.Parse(number)
	if err != nil {
		t.Fatal(err)
	}
	h := hasher(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	req := contracts.LoanRequested{
		SearchID: "e2b4948b-7d8a-4eec-875c-b1c11d7d8372", PhoneHash: h.Hex(n), PhoneMasked: n.Masked(),
		ProductType: contracts.ProductLoan, RequestedAt: now, Deadline: now.Add(10 * time.Second),
	}
	var rec *preapproval.Record
	if r, ok := ix.Lookup(h.Sum(n), contracts.ProductLoan); ok {
		rec = &r
	}
	return policy.Decide(policy.Default(), rec, req, now)
}

func TestImport(t *testing.T) {
	c := newImp(t)

	// Bad rows are reported with their line and reason, never their content, and skipped.
	out, errOut, err := c.Run(c.env(), "import", writeFile(t, "bank-v1.csv", v1))
	if err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"bank-v1.csv:5: product_type: want loan or credit_card\n",
		"bank-v1.csv:6: limit: want roubles above zero",
		"bank-v1.csv:7: phone: not a Russian phone number\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if n := strings.Count(errOut, "\n"); n != 3 {
		t.Errorf("%d lines on stderr, want one per bad row:\n%s", n, errOut)
	}
	for _, raw := range []string{"000-11-22", "0001122", "12345", "9001112233"} {
		if strings.Contains(errOut+out, raw) {
			t.Errorf("the output shows the phone %q:\n%s\n%s", raw, out, errOut)
		}
	}
	if !strings.Contains(out, "stored bank-v1.csv as preapprovals/current") || !strings.Contains(out, "records    3 (3 bad rows skipped") {
		t.Errorf("summary:\n%s", out)
	}
	first, ix := c.object()
	if ix.Len() != 3 || first.Metadata[snapshotstore.MetaBadRows] != "3" || first.Metadata[snapshotstore.MetaSource] != "bank-v1.csv" {
		t.Fatalf("stored %d records, metadata %v", ix.Len(), first.Metadata)
	}
	for _, p := range []string{phoneA, phoneB, phoneC} {
		if s := decide(t, ix, p); s.Verdict != contracts.Approved {
			t.Errorf("%s: %s %v", p, s.Verdict, s.Reasons)
		}
	}

	// The same file again, and the same records spelled otherwise: no new version.
	for _, file := range []string{writeFile(t, "bank-v1.csv", v1), writeFile(t, "bank-v1-again.csv", v1Respelled)} {
		out, errOut, err = c.Run(c.env(), "import", file)
		if err != nil {
			t.Fatalf("re-import: %v\n%s", err, errOut)
		}
		if !strings.HasPrefix(out, "unchanged: preapprovals/current already holds the content of") {
			t.Errorf("re-import summary:\n%s", out)
		}
		again, _ := c.object()
		if again.NUID != first.NUID || !again.ModTime.Equal(first.ModTime) {
			t.Errorf("re-import wrote a new version: nuid %s at %s, was %s at %s", again.NUID, again.ModTime, first.NUID, first.ModTime)
		}
	}

	// A newer export replaces the old as a whole: B, not in it, is gone; C has expired.
	out, errOut, err = c.Run(c.env(), "import", writeFile(t, "bank-v2.csv", v2))
	if err != nil || errOut != "" {
		t.Fatalf("import v2: %v\n%s", err, errOut)
	}
	second, ix := c.object()
	if second.NUID == first.NUID || ix.Len() != 2 {
		t.Fatalf("v2 not stored: nuid %s (was %s), %d records\n%s", second.NUID, first.NUID, ix.Len(), out)
	}
	tests := []struct {
		phone   string
		verdict contracts.Verdict
		reasons string
	}{
		{phoneA, contracts.Approved, policy.ReasonApproved},
		{phoneB, contracts.Declined, policy.ReasonNoPreapproval},
		{phoneC, contracts.Declined, policy.ReasonExpired},
	}
	for _, tt := range tests {
		s := decide(t, ix, tt.phone)
		if s.Verdict != tt.verdict || strings.Join(s.Reasons, ",") != tt.reasons {
			t.Errorf("%s after v2: %s %v, want %s %s", tt.phone, s.Verdict, s.Reasons, tt.verdict, tt.reasons)
		}
	}
}

// An export that cannot be read, or holds no good row, is refused and the stored snapshot
// stays.
func TestImportRefusesAndKeepsTheStoredSnapshot(t *testing.T) {
	c := newImp(t)
	if _, errOut, err := c.Run(c.env(), "import", writeFile(t, "v1.csv", v1)); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	before, _ := c.object()
	tests := []struct{ name, file, wantErr string }{
		{"no header", "9330445040,loan,pre_approved,1000000,A,2099-12-31\n", "bad header"},
		{"header only", "phone,product_type,decision,limit,grade,valid_until\n", "no valid row"},
		{"only bad rows", "phone,product_type,decision,limit,grade,valid_until\n9330445040,loan,maybe,1,A,2099-12-31\n", "no valid row"},
		{"unclosed quote", "phone,product_type,decision,limit,grade,valid_until\n\"9330445040,loan,pre_approved,1000000,A,2099-12-31\n" + strings.Repeat("9330445040,loan,pre_approved,1000000,A,2099-12-31\n", 4000), "longer than"},
		{"empty", "", "the file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.Run(c.env(), "import", writeFile(t, "bad.csv", tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "9330445040") {
				t.Errorf("the error shows a phone: %v", err)
			}
			if after, _ := c.object(); after.NUID != before.NUID {
				t.Errorf("a refused export replaced the snapshot")
			}
		})
	}
}

func TestUsageAndConfig(t *testing.T) {
	c := newImp(t)
	file := writeFile(t, "v1.csv", v1)
	tests := []struct {
		name    string
		env     func(string) string
		args    []string
		wantErr string
	}{
		{"no command", c.env(), nil, "usage: yactl preapprovals"},
		{"unknown command", c.env(), []string{"export"}, "unknown command"},
		{"import without a file", c.env(), []string{"import"}, "usage: yactl preapprovals"},
		{"no key", c.env("PHONE_HASH_KEY", ""), []string{"import", file}, "PHONE_HASH_KEY: required, at least 32 bytes"},
		{"short key", c.env("PHONE_HASH_KEY", "short"), []string{"import", file}, "PHONE_HASH_KEY"},
		{"bad interval", c.env("PROGRESS_INTERVAL", "often"), []string{"import", file}, "PROGRESS_INTERVAL"},
		{"missing file", c.env(), []string{"import", filepath.Join(t.TempDir(), "none.csv")}, "no such file"},
		{"generate without N", c.env(), []string{"generate", "x.csv"}, "usage: yactl preapprovals"},
		{"generate negative", c.env(), []string{"generate", "-5", "x.csv"}, "usage: yactl preapprovals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.Run(tt.env, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
	obs, err := c.js.ObjectStore(context.Background(), contracts.BucketPreapprovals)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(context.Background(), contracts.PreapprovalsObject); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("a refused command line touched the store: %v", err)
	}
}

// generate writes what import reads, bad rows where asked.
func TestGenerateThenImport(t *testing.T) {
	c := newImp(t)
	path := filepath.Join(t.TempDir(), "gen.csv")
	if _, _, err := c.Run(c.env(), "generate", "-bad-every", "10", "-seed", "7", "1000", path); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := c.Run(c.env(), "import", path)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	if n := strings.Count(errOut, "\n"); n != 100 || !strings.Contains(out, "records    900 (100 bad rows skipped") {
		t.Fatalf("%d bad rows reported; summary:\n%s", n, out)
	}
	if _, ix := c.object(); ix.Len() != 900 {
		t.Fatalf("stored %d records", ix.Len())
	}
}

func TestProgress(t *testing.T) {
	t0 := time.Date(2026, 7, 1, 3, 0, 0, 0, time.UTC)
	clock := t0
	now := func() time.Time { return clock }
	at := func(p *progress, d time.Duration, pr snapshotstore.Progress) {
		clock = t0.Add(d)
		p.update(pr)
	}
	row := func(pass, rows int, done bool) snapshotstore.Progress {
		return snapshotstore.Progress{Pass: pass, Records: rows - rows/100, BadRows: rows / 100, Bytes: int64(rows) * 64, Done: done}
	}

	// Not a terminal: a plain line every interval, none for a pass's end.
	var log bytes.Buffer
	p := newProgress(&log, false, 10*time.Second, now)
	at(p, 0, row(1, 0, false))
	at(p, 5*time.Second, row(1, 500_000, false))
	at(p, 10*time.Second, row(1, 1_000_000, false))
	at(p, 11*time.Second, row(1, 1_100_000, true))
	p.clear()
	if want := "checking (pass 1 of 2): 1,000,000 rows, 100,000 rows/s, 10,000 bad, 61.0 MiB read\n"; log.String() != want {
		t.Errorf("log output %q, want %q", log.String(), want)
	}

	// Interval 0: nothing at all.
	log.Reset()
	p = newProgress(&log, false, 0, now)
	at(p, 0, row(1, 0, false))
	at(p, time.Hour, row(1, 1_000_000, false))
	if log.Len() != 0 {
		t.Errorf("interval 0 wrote %q", log.String())
	}

	// A terminal: one line redrawn in place, at most every redrawEvery, and taken off by clear.
	var term bytes.Buffer
	p = newProgress(&term, true, 10*time.Second, now)
	at(p, 0, row(2, 0, false))
	at(p, 100*time.Millisecond, row(2, 10_000, false))
	at(p, 400*time.Millisecond, row(2, 40_000, false))
	p.clear()
	if want := "\r\x1b[Kuploading (pass 2 of 2): 40,000 rows, 100,000 rows/s, 400 bad, 2.4 MiB read\r\x1b[K"; term.String() != want {
		t.Errorf("terminal output %q, want %q", term.String(), want)
	}
}
