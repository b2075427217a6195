package config

import (
	"errors"
	"fmt"
	"math"
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

// MinSecretBits is the least a token or password must carry beyond loopback, by the
// conservative estimate of SecretBits.
const MinSecretBits = 128

// SecretBits estimates how many bits of chance a secret holds: the Shannon entropy of its
// characters times its length. It is conservative: 16 random bytes written as 32 hex digits
// score about 120, so a token is made as `openssl rand -hex 32` (about 240); a word, a
// name and a number, or one character repeated, score far lower.
func SecretBits(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	bits := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(len(s))
			bits -= p * math.Log2(p)
		}
	}
	return bits * float64(len(s))
}

// CheckSecret says why a token or password must not guard anything reachable beyond this
// machine: it is committed to this repository, or too easily guessed.
func CheckSecret(s string) error {
	switch {
	case committed[s]:
		return errors.New("it is committed to the repository, so it guards nothing: generate one, e.g. openssl rand -hex 32")
	case SecretBits(s) < MinSecretBits:
		return fmt.Errorf("it holds about %.0f bits, want %d or more: generate one, e.g. openssl rand -hex 32", SecretBits(s), MinSecretBits)
	}
	return nil
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
