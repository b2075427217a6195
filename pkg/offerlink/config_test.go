package offerlink_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/offerlink"
)

func TestReadConfig(t *testing.T) {
	a, _ := offerlink.GenerateKey("a")
	b, _ := offerlink.GenerateKey("b")
	set, _ := offerlink.NewKeySet(a, b).Marshal()
	r, _ := offerlink.NewKeySet(a, b).Retire("a", time.Now())
	retired, _ := r.Marshal()
	file := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantKID string
		wantErr string
	}{
		{"none: the caller decides", nil, "", ""},
		{"a file, first key signs", map[string]string{"LINK_KEYS_FILE": file}, "a", ""},
		{"inline, named key signs", map[string]string{"LINK_KEYS": string(set), "LINK_KEY_ID": "b"}, "b", ""},
		{"both", map[string]string{"LINK_KEYS": string(set), "LINK_KEYS_FILE": file}, "", "not both"},
		{"a key id not in the set", map[string]string{"LINK_KEYS_FILE": file, "LINK_KEY_ID": "c"}, "", `no key "c"`},
		{"not a key set", map[string]string{"LINK_KEYS": `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`}, "", "LINK_KEYS"},
		{"missing file", map[string]string{"LINK_KEYS_FILE": file + ".gone"}, "", "LINK_KEYS_FILE"},
		{"issuer too long", map[string]string{"LINK_ISSUER": strings.Repeat("i", 65)}, "", "LINK_ISSUER"},
		{"lifetime too short", map[string]string{"LINK_LIFETIME": "1s"}, "", "LINK_LIFETIME"},
		{"the first key retired: the next seals", map[string]string{"LINK_KEYS": string(retired)}, "b", ""},
		{"a retired key named", map[string]string{"LINK_KEYS": string(retired), "LINK_KEY_ID": "a"}, "", "retired"},
		{"reporting window", map[string]string{"LINK_REPORTING_WINDOW": "9000h"}, "", "LINK_REPORTING_WINDOW"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := config.NewReader(func(k string) string { return tt.env[k] })
			c := offerlink.ReadConfig(r)
			err := r.Err()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if err == nil && c.KeyID != tt.wantKID {
				t.Fatalf("KeyID = %q, want %q", c.KeyID, tt.wantKID)
			}
			if err != nil && strings.Contains(err.Error(), `"d"`) {
				t.Fatalf("the error shows key material: %v", err)
			}
		})
	}
}
