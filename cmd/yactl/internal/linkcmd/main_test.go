package linkcmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
)

func linkctl(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// The rotation with the tool, as docs/operating.md gives it: keygen, add, retire, prune; and
// verify opens the links each set should open.
func TestRotationAndVerify(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	set, err := linkctl(t, nil, "keygen", "2026-12")
	if err != nil {
		t.Fatal(err)
	}
	old := write("old.json", set)
	grown, err := linkctl(t, nil, "add", old, "2027-01")
	if err != nil {
		t.Fatal(err)
	}
	both := write("both.json", grown)
	if _, err := linkctl(t, nil, "add", both, "2027-01"); err == nil {
		t.Error("add accepted a key id already in the set")
	}
	retiredSet, err := linkctl(t, nil, "retire", both, "2026-12")
	if err != nil {
		t.Fatal(err)
	}
	retired := write("retired.json", retiredSet)
	if _, err := linkctl(t, nil, "retire", retired, "2026-12"); err == nil {
		t.Error("a key retired twice")
	}
	// Just retired: prune keeps it, and says until when.
	out, err := linkctl(t, nil, "prune", retired)
	if err != nil || !strings.Contains(out, `"2026-12"`) || !strings.Contains(out, "kept 2026-12") {
		t.Fatalf("prune right after the rotation: %v\n%s", err, out)
	}
	// Retired 49 days ago, past a 7-day lifetime, a 30-day window and 12 days more: dropped.
	parsed, _ := offerlink.ParseKeySet([]byte(grown))
	notYet, _ := parsed.Retire("2026-12", time.Now().Add(-47*24*time.Hour))
	data, _ := notYet.Marshal()
	if out, err := linkctl(t, nil, "prune", write("not-yet.json", string(data))); err != nil || !strings.Contains(out, "kept 2026-12") {
		t.Fatalf("prune 47 days after the retirement, within its 49: %v\n%s", err, out)
	}
	longAgo, err := parsed.Retire("2026-12", time.Now().Add(-49*24*time.Hour-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	data, _ = longAgo.Marshal()
	out, err = linkctl(t, nil, "prune", write("long-ago.json", string(data)))
	if err != nil || !strings.Contains(out, "dropped 2026-12") || strings.Contains(out, `"kid":"2026-12"`) {
		t.Fatalf("prune past the window: %v\n%s", err, out)
	}
	if _, err := linkctl(t, nil, "prune", old); err != nil {
		t.Errorf("prune of a set with nothing retired: %v", err)
	}

	seal := func(file, kid string, until time.Time) string {
		data, _ := os.ReadFile(file)
		keys, err := offerlink.ParseKeySet(data)
		if err != nil {
			t.Fatal(err)
		}
		s, err := offerlink.NewSealer(keys, kid)
		if err != nil {
			t.Fatal(err)
		}
		o := contracts.Offer{ProductType: contracts.ProductCreditCard, Decision: contracts.PreApproved,
			Amount: contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(120_000)}, Rate: contracts.RateRange{Min: 29_900, Max: 29_900},
			ProposalLink: contracts.ProposalLink{Link: "https://bank.example/apply"}}
		ref, err := s.Seal(&o, offerlink.ForOffer("e2b4948b-7d8a-4eec-875c-b1c11d7d8372", "card-120", o, time.Now(), until))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Replace(o.ProposalLink.Link, contracts.RefMarker, ref, 1)
	}
	now := time.Now()
	oldLink, newLink := seal(old, "2026-12", now.Add(time.Hour)), seal(both, "2027-01", now.Add(time.Hour))
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in the output, or in the error when fail
		fail bool
	}{
		{"the new key's link", map[string]string{"LINK_KEYS_FILE": retired}, []string{"verify", newLink}, `"offer": "card-120"`, false},
		{"the retired key's link", map[string]string{"LINK_KEYS_FILE": retired}, []string{"verify", oldLink}, "valid until", false},
		{"the old set lacks the new key", map[string]string{"LINK_KEYS_FILE": old}, []string{"verify", newLink}, "unknown_key", true},
		{"expired", map[string]string{"LINK_KEYS_FILE": both}, []string{"verify", "-at", now.Add(2 * time.Hour).UTC().Format(time.RFC3339), newLink}, "expired", true},
		{"another site", map[string]string{"LINK_KEYS_FILE": both}, []string{"verify", strings.Replace(newLink, "bank.example", "evil.example", 1)}, "wrong_address", true},
		{"no keys at all", nil, []string{"verify", newLink}, "LINK_KEYS_FILE", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := linkctl(t, tt.env, tt.args...)
			if tt.fail {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want one saying %q", err, tt.want)
				}
				return
			}
			if err != nil || !strings.Contains(out, tt.want) {
				t.Fatalf("out %q, err %v; want %q", out, err, tt.want)
			}
		})
	}
	for _, args := range [][]string{nil, {"keygen"}, {"keygen", "bad kid"}, {"verify"}, {"frobnicate"}, {"public", old}} {
		if _, err := linkctl(t, nil, args...); err == nil {
			t.Errorf("%q succeeded", args)
		} else if len(args) != 2 && !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want the usage", args, err)
		}
	}
}
