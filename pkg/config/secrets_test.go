package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// Beyond loopback a token or password is neither one committed here nor anything but random
// bytes in hex; the rule is exact, so a generated secret never fails it by chance.
func TestCheckSecret(t *testing.T) {
	for _, tt := range []struct {
		name, secret, want string
	}{
		{"openssl rand -hex 32", "42e217b2db34ef7f5c8700c404f6b1836abce421472f970ddebbd9f5c08ef5e1", ""},
		{"openssl rand -hex 16: 128 bits", "6631d37909a6f9ed9ba14333c3f9923c", ""},
		{"a NATS password: a letter, then hex", "p42e217b2db34ef7f5c8700c404f6b1836abce421472f970ddebbd9f5c08ef5e1", ""},
		{"the dev overlay's API token", "dev-only-token", "committed"},
		{"compose's intake token", "compose-intake-not-a-secret", "committed"},
		{"a dev NATS password", "devgatewayNotASecret0123", "committed"},
		{"short hex", "6631d37909a6f9ed", "8 bytes"},
		{"a phrase", "yandex-credits-api-token-for-demobank-production", "not random bytes in hex"},
		{"a password repeated", "Summer2026!Summer2026!Summer2026!Summer2026!", "not random bytes in hex"},
		{"hex digits in order, three times", strings.Repeat("0123456789abcdef", 3), "repeats"},
		{"one byte, over and over", strings.Repeat("ab", 32), "repeats"},
		{"hex digits up and down", "0123456789abcdeffedcba9876543210", "alphabet"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSecret(tt.secret)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckSecret = %v, want %q", err, tt.want)
			}
		})
	}
}

// Every secret made as the docs and scripts make them passes: 20,000 of each (the rule refuses
// a random one about once in a hundred billion, so this cannot fail by chance in practice).
func TestGeneratedSecretsPass(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		for range 20000 {
			b := make([]byte, n)
			_, _ = rand.Read(b)
			for _, s := range []string{hex.EncodeToString(b), "p" + hex.EncodeToString(b)} {
				if err := CheckSecret(s); err != nil {
					t.Fatalf("%s (%d random bytes): %v", s, n, err)
				}
			}
			if n == 32 {
				for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
					if s := enc.EncodeToString(b); CheckRandom(s, b, 32) != nil {
						t.Fatalf("%s: %v", s, CheckRandom(s, b, 32))
					}
				}
			}
		}
	}
}

// A NATS password is judged only when the broker is reached beyond loopback.
func TestNATSPasswordBeyondLoopback(t *testing.T) {
	for _, tt := range []struct {
		url, password string
		refused       bool
	}{
		{"nats://127.0.0.1:4222", "compose-gateway-not-a-secret", false},
		{"nats://nats:4222", "compose-gateway-not-a-secret", true},
		{"nats://a:4222,nats://b:4222", "42e217b2db34ef7f5c8700c404f6b1836abce421472f970ddebbd9f5c08ef5e1", false},
	} {
		r := NewReader(func(k string) string {
			return map[string]string{"NATS_URL": tt.url, "NATS_USER": "gateway", "NATS_PASSWORD": tt.password}[k]
		})
		ReadNATS(r)
		if err := r.Err(); (err != nil) != tt.refused || (err != nil && strings.Contains(err.Error(), tt.password)) {
			t.Errorf("%s with %q: %v (refused: want %v; the error must not show the password)", tt.url, tt.password, err, tt.refused)
		}
	}
}
