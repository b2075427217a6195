package linkcmd

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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

// A key set made with keygen and grown with add signs links that verify against its public
// half, from a file or a URL, and refuses what it must.
func TestKeysAndVerify(t *testing.T) {
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
	pub, err := linkctl(t, nil, "public", both)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(pub, `"d"`) || !strings.Contains(pub, `"2026-12"`) || !strings.Contains(pub, `"2027-01"`) {
		t.Fatalf("public set: %s", pub)
	}
	jwks := write("jwks.json", pub)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(pub)) }))
	defer srv.Close()

	keys, err := offerlink.ParseKeySet([]byte(grown))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := offerlink.NewSigner(keys, "2027-01", "yacredits")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	offer := contracts.Offer{ProductType: contracts.ProductCreditCard, Decision: contracts.PreApproved,
		Amount: contracts.AmountRange{Min: money.Roubles(10_000), Max: money.Roubles(120_000)}, Rate: contracts.RateRange{Min: 29_900, Max: 29_900}}
	const id = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"
	link, err := signer.Link("https://bank.example/apply?search_id="+id+"&offer=card-120",
		offerlink.ForOffer("", id, "card-120", offer, now, time.Hour, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in the output, or in the error when wantErr
		fail bool
	}{
		{"against the JWKS file", nil, []string{"verify", "-jwks", jwks, link}, `"offer": "card-120"`, false},
		{"against the JWKS URL", nil, []string{"verify", "-jwks", srv.URL, link}, `"search_id": "` + id, false},
		{"against LINK_KEYS_FILE", map[string]string{"LINK_KEYS_FILE": both}, []string{"verify", link}, "valid until", false},
		{"the old set lacks the new key", map[string]string{"LINK_KEYS_FILE": old}, []string{"verify", link}, "unknown_key", true},
		{"expired", nil, []string{"verify", "-jwks", jwks, "-at", now.Add(2 * time.Hour).UTC().Format(time.RFC3339), link}, "expired", true},
		{"another issuer expected", nil, []string{"verify", "-jwks", jwks, "-issuer", "otherbank", link}, "wrong_issuer", true},
		{"edited query", nil, []string{"verify", "-jwks", jwks, strings.Replace(link, "offer=card-120", "offer=card-999", 1)}, "link_mismatch", true},
		{"no keys at all", nil, []string{"verify", link}, "no keys", true},
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
	for _, args := range [][]string{nil, {"keygen"}, {"keygen", "bad kid"}, {"verify"}, {"frobnicate"}} {
		if _, err := linkctl(t, nil, args...); err == nil {
			t.Errorf("%q succeeded", args)
		} else if len(args) != 2 && !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want the usage", args, err)
		}
	}
}
