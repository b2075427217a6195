package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// committed are the secrets this repository ever held as defaults or demo values (compose,
// the dev overlay, the standalone binary): anybody can read them here, so beyond loopback
// they guard nothing.
var committed = map[string]bool{
	"dev-only-token": true, "dev-only-intake": true, "dev-only-site": true, "dev-only-yandex-token": true,
	"compose-intake-not-a-secret": true, "compose-site-not-a-secret": true,
	"compose-gateway-not-a-secret": true, "compose-scoring-not-a-secret": true, "compose-offers-not-a-secret": true,
	"compose-conversions-not-a-secret": true, "compose-ops-not-a-secret": true,
	"devgatewayNotASecret0123": true, "devscoringNotASecret0123": true, "devoffersNotASecret0123": true,
	"devconversionsNotASecret0123": true, "devopsNotASecret0123": true, "devrouteNotASecret0123": true,
}

// MinSecretBytes is the least a token or password carries beyond loopback: 128 bits.
const MinSecretBytes = 16

// CheckSecret says why a token or password must not guard anything reachable beyond this
// machine: it is committed to this repository, or it is not random bytes written in hex (as
// `openssl rand -hex 32` makes them; one letter may come first, for a NATS password that
// must start with one), at least MinSecretBytes of them, none of it repeated and no walk along
// the digits. A rule, not an estimate: a generated secret fails it about once in a hundred
// billion, and a phrase, a name or a pattern does not pass.
func CheckSecret(s string) error {
	if committed[s] {
		return errors.New("it is committed to the repository, so it guards nothing: generate one, e.g. openssl rand -hex 32")
	}
	h := s
	if len(h) > 0 && isLetter(h[0]) && len(h)%2 == 1 {
		h = h[1:]
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return errors.New("it is not random bytes in hex: generate one, e.g. openssl rand -hex 32")
	}
	return CheckRandom(h, raw, MinSecretBytes)
}

// CheckRandom says why text, which encodes raw, does not look like random bytes: fewer than
// minBytes of them; a run repeated (12 characters of the text, or 6 bytes of raw: in 64
// random hex digits either happens about once in a hundred billion); or a text that walks
// the alphabet ("abcdef…", "0123…", "fedc…", "02468ace…"): in base64 over a quarter of its
// steps to a next character, where one in thirty is at random; in hex over three quarters
// of its steps one or two digits up or down, where one in four is.
func CheckRandom(text string, raw []byte, minBytes int) error {
	if len(raw) < minBytes {
		return fmt.Errorf("it is %d bytes, want %d or more: generate one, e.g. openssl rand -hex 32", len(raw), minBytes)
	}
	if repeats(text, 12) || repeats(string(raw), 6) {
		return errors.New("it repeats itself: generate one, e.g. openssl rand -hex 32")
	}
	hexText, steps := isHex(text), 0
	for i := 1; i < len(text); i++ {
		d := int(text[i]) - int(text[i-1])
		if d == 1 || d == -1 || hexText && (d == 2 || d == -2) {
			steps++
		}
	}
	if walks := len(text) - 1; !hexText && steps*4 > walks || hexText && steps*4 > 3*walks {
		return errors.New("it runs along the alphabet: generate one, e.g. openssl rand -hex 32")
	}
	return nil
}

func repeats(s string, n int) bool {
	seen := map[string]bool{}
	for i := 0; i+n <= len(s); i++ {
		if seen[s[i:i+n]] {
			return true
		}
		seen[s[i:i+n]] = true
	}
	return false
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// RequireSecrets records a problem for each of values (the variable name's, comma-separated
// ones included) that CheckSecret refuses, where the service is reached beyond loopback.
func (r *Reader) RequireSecrets(name string, values ...string) {
	for i, v := range values {
		if err := CheckSecret(v); err != nil {
			which := ""
			if len(values) > 1 {
				which = fmt.Sprintf(" (the %s)", ordinal(i+1))
			}
			r.Fail(name, "refused beyond loopback%s: %v", which, err)
		}
	}
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "first"
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return fmt.Sprintf("%dth", n)
}

// AllLoopback reports whether every address given (listen addresses, or URLs, the empty
// ones skipped) stays on this machine.
func AllLoopback(addrs ...string) bool {
	for _, a := range addrs {
		for _, one := range strings.Split(a, ",") {
			if one = strings.TrimSpace(one); one != "" && !Loopback(one) {
				return false
			}
		}
	}
	return true
}
