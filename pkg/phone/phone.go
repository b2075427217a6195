// Package phone turns what people type into a canonical Russian phone number and turns that
// into the only two forms allowed to leave the gateway: a keyed hash for machines and a
// masked form for people. A Number prints masked, so that a %v in a log line or an error
// cannot leak it; the canonical digits are reachable only through Canonical.
package phone

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/demobank/yacredits/pkg/config"
)

// ErrInvalid is returned for anything that is not a Russian phone number.
var ErrInvalid = errors.New("not a Russian phone number: expected 10 digits, or 11 starting with 7 or 8, or +7 and 10 digits")

// Number is a canonical phone number, +7XXXXXXXXXX. Its zero value is not a number.
type Number struct{ canonical string }

// Parse normalises s: spaces, tabs, dashes, dots and parentheses are dropped, then it must
// be 10 digits, 11 digits starting with 7 or 8, or "+7" and 10 digits.
func Parse(s string) (Number, error) {
	var b [16]byte
	digits := b[:0]
	plus := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if len(digits) == cap(digits) {
				return Number{}, ErrInvalid
			}
			digits = append(digits, c)
		case c == ' ' || c == '\t' || c == '-' || c == '.' || c == '(' || c == ')':
		case c == '+' && i == 0:
			plus = true
		default:
			return Number{}, ErrInvalid
		}
	}
	switch {
	case plus && len(digits) == 11 && digits[0] == '7':
		digits = digits[1:]
	case !plus && len(digits) == 11 && (digits[0] == '7' || digits[0] == '8'):
		digits = digits[1:]
	case !plus && len(digits) == 10:
	default:
		return Number{}, ErrInvalid
	}
	return Number{canonical: "+7" + string(digits)}, nil
}

// Canonical returns +7XXXXXXXXXX. Call it only to hash the number.
func (n Number) Canonical() string { return n.canonical }

// Masked returns the form people may see, in logs and stored records: the last four digits,
// +7******5040. Enough for a support desk to match a client who names them; not enough to
// find the person: a million numbers end in any four digits, where the form with the
// operator code too (+7933***5040) left a thousand, one call each.
func (n Number) Masked() string {
	if len(n.canonical) != 12 {
		return ""
	}
	return "+7******" + n.canonical[8:]
}

// String returns the masked form, never the number.
func (n Number) String() string { return n.Masked() }

// GoString returns the masked form too, so that %#v is safe.
func (n Number) GoString() string { return "phone.Number(" + n.Masked() + ")" }

// MinKeyBytes is the shortest hashing key accepted: HMAC-SHA256 is only as strong as its key.
const MinKeyBytes = 32

// Hasher computes the keyed hash under which a phone number travels and is stored. The key
// is the bank's secret; without it the hash of a phone number cannot be recomputed, so a
// leaked record does not reveal who asked. Safe for concurrent use.
type Hasher struct {
	pool sync.Pool
}

// NewHasher returns a Hasher for key, which must be at least MinKeyBytes long.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinKeyBytes {
		return nil, errors.New("phone hash key: at least 32 bytes are required")
	}
	k := append([]byte(nil), key...)
	h := &Hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, k) }
	return h, nil
}

// Sum returns the HMAC-SHA256 of the canonical number.
func (h *Hasher) Sum(n Number) [32]byte {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(n.canonical))
	var out [32]byte
	m.Sum(out[:0])
	h.pool.Put(m)
	return out
}

// Hex returns Sum as lowercase hex, the form messages and records carry.
func (h *Hasher) Hex(n Number) string {
	s := h.Sum(n)
	return hex.EncodeToString(s[:])
}

// ParseHex reads a hash written by Hex.
func ParseHex(s string) ([32]byte, error) {
	var out [32]byte
	if len(s) != 64 || strings.ToLower(s) != s {
		return out, errors.New("phone hash: want 64 lowercase hex digits")
	}
	_, err := hex.Decode(out[:], []byte(s))
	return out, err
}

// publicKeys are hashing keys that were ever committed to this repository (the standalone
// binary's demo key, the docker compose and dev defaults): anybody can recompute a phone's
// hash under them, so a record made with one protects nothing.
var publicKeys = []string{
	"standalone-demo-key-not-a-secret-0123456789",
	"compose-only-phone-hash-key-not-a-secret-0123456789",
	"dev-only-phone-hash-key-not-a-secret-0123456789",
	"standalone-demo-audit-key-not-a-secret-0123456789", // the audit trail's (CheckKey judges it too)
}

// CheckKey says why key must not hash real phones: a public key; one that is not 32 or more
// bytes written in hex or base64 (as `openssl rand -hex 32` or `-base64 32` makes them); or
// one that does not look random (config.CheckRandom: a repeated run, a walk along the
// alphabet). The key hashes as it is written; its decoded bytes are what is judged, since hex
// digits alone would look random whatever they spell. Outside a laptop the services refuse
// such a key: a phone number has only ten digits, so with a known key its hash gives it back
// in a fraction of a second.
func CheckKey(key []byte) error {
	for _, k := range publicKeys {
		if string(key) == k {
			return errors.New("this key is public (committed to the repository): generate one, e.g. openssl rand -hex 32")
		}
	}
	text := strings.TrimSpace(string(key))
	raw, ok := decodeKey(text)
	if !ok {
		return errors.New("this key is neither hex nor base64: generate one, e.g. openssl rand -hex 32")
	}
	if err := config.CheckRandom(text, raw, MinKeyBytes); err != nil {
		return fmt.Errorf("this key: %w", err)
	}
	return nil
}

// decodeKey reads a key written in hex, or in base64 (standard or URL alphabet, padded or
// not).
func decodeKey(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil {
		return b, true
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}
