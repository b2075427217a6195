package phone

import (
	"strings"
	"testing"
)

func TestKeyring(t *testing.T) {
	k1, k2 := []byte(strings.Repeat("a1", 32)), []byte(strings.Repeat("b2", 32))
	ring, err := NewKeyring(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := NewHasher(k1)
	n, _ := Parse("9330445040")
	if ring.Current().ID() == h1.ID() || len(ring.Current().ID()) != 16 {
		t.Fatalf("ids %q %q", ring.Current().ID(), h1.ID())
	}
	if got := ring.ByID(h1.ID()); got == nil || got.Hex(n) != h1.Hex(n) {
		t.Error("the earlier key is not looked up by its id")
	}
	if ring.ByID("0000000000000000") != nil {
		t.Error("an unknown id found a key")
	}
	if strings.Contains(string(k1), h1.ID()) || strings.Contains(h1.Hex(n), h1.ID()) {
		t.Error("the id is part of the key or of a phone's hash")
	}
	for name, old := range map[string][][]byte{
		"the same key twice": {k2},
		"a short old key":    {[]byte("short")},
		"too many old keys":  {k1, []byte(strings.Repeat("c3", 32)), []byte(strings.Repeat("d4", 32))},
	} {
		if _, err := NewKeyring(k2, old...); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
