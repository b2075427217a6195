package config

import (
	"strings"
	"testing"
)

// Beyond loopback a token or password is neither one committed here nor a guessable one.
func TestCheckSecret(t *testing.T) {
	for _, tt := range []struct {
		name, secret, want string
	}{
		{"openssl rand -hex 32", "42e217b2db34ef7f5c8700c404f6b1836abce421472f970ddebbd9f5c08ef5e1", ""},
		{"openssl rand -base64 32", "9y0wdtYVE2EpZeys2VC34fes+Txe5IA/6cr088OMiog=", ""},
		{"the dev overlay's API token", "dev-only-token", "committed"},
		{"compose's intake token", "compose-intake-not-a-secret", "committed"},
		{"a dev NATS password", "devgatewayNotASecret0123", "committed"},
		{"short", "s3cr3t", "bits"},
		{"long but one character", strings.Repeat("x", 100), "bits"},
		{"sixteen random bytes in hex: under the conservative estimate", "4c1f8a2e9d7b3c6f0a5e8d1b4f7c2a9e", "bits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSecret(tt.secret)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckSecret = %v, want %q", err, tt.want)
			}
		})
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
