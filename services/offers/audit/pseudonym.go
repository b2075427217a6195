package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
)

// Pseudonyms turns the phone hash a search record carries into the trail's pseudonym: the
// HMAC-SHA256 of that hash under a key of the trail's own (AUDIT_PSEUDONYM_KEY), which offers
// alone holds. The gateway, scoring and the import hold the phone-hash key, and never this
// one: whoever takes either key alone cannot tell whose decisions the trail keeps, and the
// phone-hash key can rotate without touching a year of the trail (docs/security.md).
// Safe for concurrent use.
type Pseudonyms struct {
	pool sync.Pool
	id   string
}

// MinKeyBytes is the shortest key accepted, as for the phone-hash key.
const MinKeyBytes = 32

// NewPseudonyms returns the Pseudonyms of key.
func NewPseudonyms(key []byte) (*Pseudonyms, error) {
	if len(key) < MinKeyBytes {
		return nil, errors.New("audit pseudonym key: at least 32 bytes are required")
	}
	k := append([]byte(nil), key...)
	p := &Pseudonyms{}
	p.pool.New = func() any { return hmac.New(sha256.New, k) }
	id := p.sum([]byte("yacredits audit pseudonym key id"))
	p.id = hex.EncodeToString(id[:8])
	return p, nil
}

// ID names the key without revealing it; every batch of the trail names the key its
// pseudonyms are under.
func (p *Pseudonyms) ID() string { return p.id }

// Of writes the pseudonym of phoneHash (64 hex digits) into dst, as 64 hex digits.
func (p *Pseudonyms) Of(dst, phoneHash []byte) {
	sum := p.sum(phoneHash)
	hex.Encode(dst, sum[:])
}

func (p *Pseudonyms) sum(b []byte) [32]byte {
	m := p.pool.Get().(hash.Hash)
	m.Reset()
	m.Write(b)
	var out [32]byte
	m.Sum(out[:0])
	p.pool.Put(m)
	return out
}
