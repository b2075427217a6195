package offerlink

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeyAlgorithm is the "alg" of a link key: XChaCha20-Poly1305 (the name JOSE drafts give it).
const KeyAlgorithm = "XC20P"

// KeySet is the link keys, each with its own id, in a JSON Web Key Set: 256-bit secret keys
// ("kty": "oct") that seal and open references, and the Ed25519 keys of legacy tokens, which
// only verify. It keeps when each key was retired (stopped sealing), so that a key is pruned
// only once every link it sealed is past its reporting window.
type KeySet struct {
	keys    []jose.JSONWebKey
	retired map[string]time.Time
}

// keySetWire is the file: a JWKS with one member of ours beside "keys".
type keySetWire struct {
	Keys    []jose.JSONWebKey    `json:"keys"`
	Retired map[string]time.Time `json:"retired,omitempty"`
}

// kidPattern keeps key ids short and safe in a reference, a file name and a log line.
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseKeySet reads a key set. Every key needs a unique id; a key of another type or size,
// or meant for something else, is an error rather than skipped, so that a wrong file is
// noticed at start-up.
func ParseKeySet(data []byte) (*KeySet, error) {
	var set keySetWire
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("link keys: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("link keys: the set is empty")
	}
	var problems []error
	seen := map[string]bool{}
	for i, k := range set.Keys {
		switch key := k.Key.(type) {
		case []byte:
			if len(key) != 32 {
				problems = append(problems, fmt.Errorf("key %d (%q): %d bytes, want 32", i, k.KeyID, len(key)))
			}
			if k.Algorithm != "" && k.Algorithm != KeyAlgorithm {
				problems = append(problems, fmt.Errorf("key %q: alg %q, want %s", k.KeyID, k.Algorithm, KeyAlgorithm))
			}
		case ed25519.PrivateKey, ed25519.PublicKey: // a legacy token's
			if k.Algorithm != "" && k.Algorithm != string(jose.EdDSA) {
				problems = append(problems, fmt.Errorf("key %q: alg %q, want EdDSA", k.KeyID, k.Algorithm))
			}
		default:
			problems = append(problems, fmt.Errorf("key %d (%q): neither a 256-bit secret key nor an Ed25519 one", i, k.KeyID))
			continue
		}
		switch {
		case !kidPattern.MatchString(k.KeyID):
			problems = append(problems, fmt.Errorf("key %d: kid %q is not 1-64 of A-Z a-z 0-9 . _ -", i, k.KeyID))
		case seen[k.KeyID]:
			problems = append(problems, fmt.Errorf("key %d: kid %q is repeated", i, k.KeyID))
		}
		seen[k.KeyID] = true
	}
	for kid := range set.Retired {
		if !seen[kid] {
			problems = append(problems, fmt.Errorf("retired: no key %q in the set", kid))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("link keys: %w", err)
	}
	return &KeySet{keys: set.Keys, retired: set.Retired}, nil
}

// GenerateKey makes a new 256-bit link key with id kid.
func GenerateKey(kid string) (jose.JSONWebKey, error) {
	if !kidPattern.MatchString(kid) || len(kid) > MaxSigningKeyIDLength {
		return jose.JSONWebKey{}, fmt.Errorf("kid %q is not 1-%d of A-Z a-z 0-9 . _ -", kid, MaxSigningKeyIDLength)
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: KeyAlgorithm, Use: "enc"}, nil
}

// NewKeySet holds the given keys (GenerateKey's, for a new set or a test).
func NewKeySet(keys ...jose.JSONWebKey) *KeySet { return &KeySet{keys: keys} }

// Marshal writes the set on one line (it fits an environment variable). It holds secret
// keys: keep its output in a Secret.
func (s *KeySet) Marshal() ([]byte, error) {
	return json.Marshal(keySetWire{Keys: s.keys, Retired: s.retired})
}

// IDs lists the key ids in the set's order.
func (s *KeySet) IDs() []string {
	ids := make([]string, len(s.keys))
	for i, k := range s.keys {
		ids[i] = k.KeyID
	}
	return ids
}

// Sealing lists the ids of the keys that may seal: secret, and not retired.
func (s *KeySet) Sealing() []string {
	var ids []string
	for _, k := range s.keys {
		if _, ok := k.Key.([]byte); ok && s.retired[k.KeyID].IsZero() {
			ids = append(ids, k.KeyID)
		}
	}
	return ids
}

// RetiredAt is when key kid stopped sealing (zero: it has not).
func (s *KeySet) RetiredAt(kid string) time.Time { return s.retired[kid] }

func (s *KeySet) secret(kid string) ([]byte, bool) {
	for _, k := range s.keys {
		if b, ok := k.Key.([]byte); ok && k.KeyID == kid {
			return b, true
		}
	}
	return nil, false
}

func (s *KeySet) legacy(kid string) (ed25519.PublicKey, bool) {
	for _, k := range s.keys {
		if k.KeyID != kid {
			continue
		}
		switch key := k.Key.(type) {
		case ed25519.PrivateKey:
			return key.Public().(ed25519.PublicKey), true
		case ed25519.PublicKey:
			return key, true
		}
	}
	return nil, false
}

// With is a new set of s's keys and k, k last: a set's first sealing key seals by default,
// so a key added for a rotation seals only once LINK_KEY_ID names it.
func (s *KeySet) With(k jose.JSONWebKey) *KeySet {
	return &KeySet{keys: append(slices.Clone(s.keys), k), retired: maps.Clone(s.retired)}
}

// Retire is a new set in which key kid stopped sealing at at: it still opens what it sealed.
func (s *KeySet) Retire(kid string, at time.Time) (*KeySet, error) {
	if !slices.Contains(s.IDs(), kid) {
		return nil, fmt.Errorf("no key %q in the set (it has %v)", kid, s.IDs())
	}
	if !s.retired[kid].IsZero() {
		return nil, fmt.Errorf("key %q was retired at %s", kid, s.retired[kid].Format(time.RFC3339))
	}
	retired := maps.Clone(s.retired)
	if retired == nil {
		retired = map[string]time.Time{}
	}
	retired[kid] = at.UTC().Truncate(time.Second)
	keys := slices.Clone(s.keys)
	for i, k := range keys {
		// A retired legacy key only verifies: keep its public half alone, so that no
		// workload holding the set can sign a token with it.
		if priv, ok := k.Key.(ed25519.PrivateKey); ok && k.KeyID == kid {
			keys[i].Key = priv.Public()
		}
	}
	return &KeySet{keys: keys, retired: retired}, nil
}

// KeepRetired is how long a retired key must stay in the set: a link it sealed just before
// its retirement is clicked until the end of the link's lifetime; a contract that followed
// may be dated until the end of the reporting window's last Moscow day (a day more), and is
// reported up to Yandex's 11 days after it is signed.
func KeepRetired(lifetime, window time.Duration) time.Duration {
	return lifetime + window + 24*time.Hour + 11*24*time.Hour
}

// Prune is a new set without the keys retired before cutoff (now less KeepRetired: nothing
// they sealed can still be reported), and their ids. A key
// never retired is kept, whatever its age: retire it first.
func (s *KeySet) Prune(cutoff time.Time) (*KeySet, []string) {
	out := &KeySet{retired: map[string]time.Time{}}
	var dropped []string
	for _, k := range s.keys {
		if at := s.retired[k.KeyID]; !at.IsZero() && at.Before(cutoff) {
			dropped = append(dropped, k.KeyID)
			continue
		}
		out.keys = append(out.keys, k)
		if at := s.retired[k.KeyID]; !at.IsZero() {
			out.retired[k.KeyID] = at
		}
	}
	if len(out.retired) == 0 {
		out.retired = nil
	}
	return out, dropped
}
