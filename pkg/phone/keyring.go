package phone

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/demobank/yacredits/pkg/config"
)

// idProbe is the number a key's ID hashes. No Russian subscriber number starts with 0, so
// the probe's hash is never a real client's.
const idProbe = "+70000000000"

// ID names h's key without revealing it: the first 8 bytes, in hex, of its hash of the
// reserved number +7 000 000-00-00 (a key of 32 random bytes cannot be found from it). Two
// hashers share an ID only if they (almost surely) share the key. It is what records,
// messages and pre-approval snapshots name their key by (the snapshot's key fingerprint).
func (h *Hasher) ID() string {
	sum := h.Sum(Number{canonical: idProbe})
	return hex.EncodeToString(sum[:8])
}

// MaxOldKeys is how many earlier keys a Keyring still looks up: a rotation needs one.
const MaxOldKeys = 2

// Keyring is the key new phones are hashed with, and the earlier keys still looked up:
// after a rotation, records made under an earlier key are compared under it for as long as
// they are kept (docs/operating.md, "Keys and their rotation").
type Keyring struct {
	current *Hasher
	old     []*Hasher
	byID    map[string]*Hasher
}

// NewKeyring makes a Keyring of current and the old keys, each at least MinKeyBytes long
// and each a different key.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	if len(old) > MaxOldKeys {
		return nil, fmt.Errorf("phone hash keys: %d earlier keys, at most %d are looked up", len(old), MaxOldKeys)
	}
	cur, err := NewHasher(current)
	if err != nil {
		return nil, err
	}
	k := &Keyring{current: cur, byID: map[string]*Hasher{cur.ID(): cur}}
	for _, key := range old {
		h, err := NewHasher(key)
		if err != nil {
			return nil, fmt.Errorf("an earlier key: %w", err)
		}
		if _, dup := k.byID[h.ID()]; dup {
			return nil, errors.New("phone hash keys: a key is given twice")
		}
		k.old = append(k.old, h)
		k.byID[h.ID()] = h
	}
	return k, nil
}

// Current is the key new phones are hashed with.
func (k *Keyring) Current() *Hasher { return k.current }

// Old are the earlier keys, still looked up.
func (k *Keyring) Old() []*Hasher { return k.old }

// ByID is the key named id, current or earlier; nil if the ring holds none.
func (k *Keyring) ByID(id string) *Hasher { return k.byID[id] }

// ReadOldKeys reads PHONE_HASH_KEYS_OLD: the earlier keys still looked up after a rotation,
// comma-separated, at most MaxOldKeys. Each must be as long as PHONE_HASH_KEY, and where
// strict (a process reachable beyond loopback), pass CheckKey as it must.
func ReadOldKeys(r *config.Reader, strict bool) [][]byte {
	var keys [][]byte
	list := r.List("PHONE_HASH_KEYS_OLD")
	if len(list) > MaxOldKeys {
		r.Fail("PHONE_HASH_KEYS_OLD", "%d keys; a rotation needs one, at most %d are looked up", len(list), MaxOldKeys)
		return nil
	}
	for i, k := range list {
		switch {
		case len(k) < MinKeyBytes:
			r.Fail("PHONE_HASH_KEYS_OLD", "key %d: at least %d bytes", i+1, MinKeyBytes)
		case strict && CheckKey([]byte(k)) != nil:
			r.Fail("PHONE_HASH_KEYS_OLD", "key %d refused beyond loopback: %v", i+1, CheckKey([]byte(k)))
		default:
			keys = append(keys, []byte(k))
		}
	}
	return keys
}
