package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/demobank/yacredits/pkg/offerlink"
)

// A data directory kept from before sealed references holds an Ed25519 key set: the next
// start adds a sealing key and retires the old one, keeping only its public half, as an
// operator's rotation would; a set that can seal is left as it is.
func TestLinkKeysOfAnOlderDataDir(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(nil)
	legacy, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv, KeyID: "standalone-20261201", Algorithm: "EdDSA", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "link-keys.json"), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	path, made, err := linkKeysFile(dir)
	if err != nil || !made {
		t.Fatalf("linkKeysFile = %s, %v, %v", path, made, err)
	}
	data, _ := os.ReadFile(path)
	keys, err := offerlink.ParseKeySet(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.Sealing()) != 1 || keys.RetiredAt("standalone-20261201").IsZero() || strings.Contains(string(data), `"d":"`) {
		t.Fatalf("the migrated set: sealing %v, legacy retired at %v, %s", keys.Sealing(), keys.RetiredAt("standalone-20261201"), data)
	}
	if _, made, err := linkKeysFile(dir); err != nil || made {
		t.Fatalf("a second start changed a set that can seal: made %v, %v", made, err)
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(data) {
		t.Error("a second start rewrote the key set")
	}
}
