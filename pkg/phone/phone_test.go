package phone

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ten digits", "9330445040", "+79330445040"},
		{"leading 8 with punctuation", "8 (933) 044-50-40", "+79330445040"},
		{"leading 7", "79330445040", "+79330445040"},
		{"plus seven spaced", "+7 933 044-50-40", "+79330445040"},
		{"dots", "933.044.50.40", "+79330445040"},
		{"tab", "933\t0445040", "+79330445040"},
		{"nine digits", "933044504", ""},
		{"twelve digits", "793304450401", ""},
		{"eleven starting with 9", "99330445040", ""},
		{"plus eight", "+89330445040", ""},
		{"plus ten digits", "+9330445040", ""},
		{"other country", "+380501234567", ""},
		{"letters", "93304450AB", ""},
		{"plus in the middle", "7+9330445040", ""},
		{"empty", "", ""},
		{"unicode digits", "９３３０４４５０４０", ""},
		{"very long", strings.Repeat("1", 1000), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) = %v, %v; want ErrInvalid", tt.in, n.Masked(), err)
				}
				return
			}
			if err != nil || n.Canonical() != tt.want {
				t.Fatalf("Parse(%q) = %q, %v; want %q", tt.in, n.Canonical(), err, tt.want)
			}
		})
	}
}

func TestNumberNeverPrintsRaw(t *testing.T) {
	n, err := Parse("9330445040")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{n.String(), fmt.Sprint(n), fmt.Sprintf("%v %+v %#v %s", n, n, n, n)} {
		if strings.Contains(s, "0445040") || strings.Contains(s, "9330445") {
			t.Errorf("formatted number leaks digits: %q", s)
		}
	}
	if n.Masked() != "+7******5040" {
		t.Errorf("Masked = %q", n.Masked())
	}
}

func TestHasher(t *testing.T) {
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("a short key was accepted")
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	h, _ := NewHasher(key)
	a, _ := Parse("8 (933) 044-50-40")
	b, _ := Parse("+79330445040")
	c, _ := Parse("9001112233")
	if h.Hex(a) != h.Hex(b) {
		t.Error("the same number spelled twice hashes differently")
	}
	if h.Hex(a) == h.Hex(c) {
		t.Error("two numbers hash alike")
	}
	// HMAC-SHA256("0123…cdef", "+79330445040"), computed independently with
	// `printf '+79330445040' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef`.
	const want = "2687a8d35edbe2b03c02217de3e2878819ee793ded189dfd07eb550237d13c09"
	if got := h.Hex(a); got != want {
		t.Errorf("Hex = %s, want %s", got, want)
	}
	other, _ := NewHasher([]byte("fedcba9876543210fedcba9876543210"))
	if other.Hex(a) == h.Hex(a) {
		t.Error("the key does not change the hash")
	}
	got, err := ParseHex(h.Hex(a))
	if err != nil || got != h.Sum(a) {
		t.Errorf("ParseHex round trip: %v", err)
	}
}

// A key is judged by the bytes it writes: 32 or more, random, in hex or base64. Hex digits
// alone look random whatever they spell, so "0123…f" twice passed an estimate over its
// characters.
func TestCheckKey(t *testing.T) {
	for _, tt := range []struct {
		name, key, want string
	}{
		{"openssl rand -hex 32", "42e217b2db34ef7f5c8700c404f6b1836abce421472f970ddebbd9f5c08ef5e1", ""},
		{"openssl rand -base64 32", "9y0wdtYVE2EpZeys2VC34fes+Txe5IA/6cr088OMiog=", ""},
		{"base64url, unpadded", "9y0wdtYVE2EpZeys2VC34fes-Txe5IA_6cr088OMiog", ""},
		{"sixteen bytes in 32 hex digits", "0123456789abcdef0123456789abcdef", "16 bytes, want 32"},
		{"a phrase", "correct horse battery staple, and a long one at that", "neither hex nor base64"},
		{"one byte repeated", strings.Repeat("aa", 32), "repeats"},
		{"a phrase twice, as base64", "CorrectHorseBatteryStapleCorrectHorseBatteryStaple", "repeats"},
		{"the alphabet, as base64", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "alphabet"},
		{"hex walks", "0123456789abcdef02468ace13579bdffedcba9876543210fdb97531eca86420", "alphabet"},
		{"the standalone's demo key", "standalone-demo-key-not-a-secret-0123456789", "public"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKey([]byte(tt.key))
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckKey = %v, want %q", err, tt.want)
			}
		})
	}
}
