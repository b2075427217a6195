package offerlink

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// KeySet is a set of Ed25519 keys, each with its own id. A set read from a Secret holds
// private keys (to sign and verify); one read from a JWKS document holds public keys only.
type KeySet struct {
	keys []jose.JSONWebKey
}

// kidPattern keeps key ids short and safe in a header, a file name and a log line.
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseKeySet reads a JSON Web Key Set ({"keys": [...]}) of Ed25519 keys, private or
// public. Every key needs a unique id; a key of another type, or meant for something other
// than signatures, is an error rather than skipped, so a wrong file is noticed at start-up.
func ParseKeySet(data []byte) (*KeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("link keys: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("link keys: the set is empty")
	}
	var problems []error
	seen := map[string]bool{}
	for i, k := range set.Keys {
		switch k.Key.(type) {
		case ed25519.PrivateKey, ed25519.PublicKey:
		default:
			problems = append(problems, fmt.Errorf("key %d (%q): not an Ed25519 key", i, k.KeyID))
			continue
		}
		switch {
		case !kidPattern.MatchString(k.KeyID):
			problems = append(problems, fmt.Errorf("key %d: kid %q is not 1-64 of A-Z a-z 0-9 . _ -", i, k.KeyID))
		case seen[k.KeyID]:
			problems = append(problems, fmt.Errorf("key %d: kid %q is repeated", i, k.KeyID))
		}
		seen[k.KeyID] = true
		if k.Use != "" && k.Use != "sig" {
			problems = append(problems, fmt.Errorf("key %q: use %q, want sig", k.KeyID, k.Use))
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.EdDSA) {
			problems = append(problems, fmt.Errorf("key %q: alg %q, want EdDSA", k.KeyID, k.Algorithm))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("link keys: %w", err)
	}
	return &KeySet{keys: set.Keys}, nil
}

// GenerateKey makes a new Ed25519 private key with id kid.
func GenerateKey(kid string) (jose.JSONWebKey, error) {
	if !kidPattern.MatchString(kid) {
		return jose.JSONWebKey{}, fmt.Errorf("kid %q is not 1-64 of A-Z a-z 0-9 . _ -", kid)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}, nil
}

// NewKeySet holds the given keys (GenerateKey's, for a new set or a test).
func NewKeySet(keys ...jose.JSONWebKey) *KeySet { return &KeySet{keys: keys} }

// Marshal writes the set as it was given, on one line (it fits an environment variable):
// a set of private keys stays private, so keep its output in a Secret.
func (s *KeySet) Marshal() ([]byte, error) {
	return json.Marshal(jose.JSONWebKeySet{Keys: s.keys})
}

// IDs lists the key ids in the set's order.
func (s *KeySet) IDs() []string {
	ids := make([]string, len(s.keys))
	for i, k := range s.keys {
		ids[i] = k.KeyID
	}
	return ids
}

// Public is the set's public half, the JWKS document a site verifies links with.
func (s *KeySet) Public() jose.JSONWebKeySet {
	pub := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, len(s.keys))}
	for i, k := range s.keys {
		pub.Keys[i] = k.Public()
		pub.Keys[i].Algorithm, pub.Keys[i].Use = string(jose.EdDSA), "sig"
	}
	return pub
}

// Private reports whether every key of the set can sign.
func (s *KeySet) Private() bool {
	for _, k := range s.keys {
		if _, ok := k.Key.(ed25519.PrivateKey); !ok {
			return false
		}
	}
	return true
}

func (s *KeySet) private(kid string) (jose.JSONWebKey, bool) {
	for _, k := range s.keys {
		if _, ok := k.Key.(ed25519.PrivateKey); ok && k.KeyID == kid {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

// With is a new set of s's keys and k, k last: a set's first key signs by default, so a
// key added for a rotation signs only once LINK_KEY_ID names it.
func (s *KeySet) With(k jose.JSONWebKey) *KeySet {
	return &KeySet{keys: append(slices.Clone(s.keys), k)}
}
