package offerlink

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/demobank/yacredits/pkg/config"
)

// Config is how a service signs or checks links, from the LINK_* variables.
type Config struct {
	// Keys (LINK_KEYS_FILE, or LINK_KEYS holding the document itself) is the key set, a
	// JWKS: private keys where links are signed (offers, from a Secret), public ones suffice
	// where they are checked (conversions). Nil when neither is set, which Require refuses
	// (the standalone binary keeps a set in its data directory).
	Keys *KeySet
	// KeyID (LINK_KEY_ID) is the key that signs; empty: the set's first key.
	KeyID string
	// Issuer (LINK_ISSUER) is the iss claim: who signed, as the bank's site checks it.
	Issuer string
	// Lifetime (LINK_LIFETIME) is how long a link stays valid at most; a link made from a
	// pre-approval expires with it when that comes first.
	Lifetime time.Duration
}

// ReadLifetime reads LINK_LIFETIME alone: for a tool that needs to know how long a link made
// now stands (yactl catalog's ceiling check) and must not touch the keys.
func ReadLifetime(r *config.Reader) time.Duration {
	return r.Duration("LINK_LIFETIME", 7*24*time.Hour, time.Minute, 365*24*time.Hour)
}

// ReadConfig reads the LINK_* variables; the key file is read and checked now, so that a
// wrong mount stops the service at start-up.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		KeyID:    r.String("LINK_KEY_ID", ""),
		Issuer:   r.String("LINK_ISSUER", "yacredits"),
		Lifetime: ReadLifetime(r),
	}
	if len(c.Issuer) > MaxIssuerLength {
		r.Fail("LINK_ISSUER", "longer than %d characters", MaxIssuerLength)
	}
	file, inline := r.String("LINK_KEYS_FILE", ""), r.Secret("LINK_KEYS", "")
	switch {
	case file != "" && inline != "":
		r.Fail("LINK_KEYS", "set LINK_KEYS_FILE or LINK_KEYS, not both")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			r.Fail("LINK_KEYS_FILE", "%v", err)
		} else if c.Keys, err = ParseKeySet(data); err != nil {
			r.Fail("LINK_KEYS_FILE", "%s: %v", file, err)
		}
	case inline != "":
		var err error
		if c.Keys, err = ParseKeySet([]byte(inline)); err != nil {
			r.Fail("LINK_KEYS", "%v", err) // the error names no key material
		}
	}
	if c.Keys != nil {
		if c.KeyID == "" {
			c.KeyID = c.Keys.IDs()[0]
		} else if !slices.Contains(c.Keys.IDs(), c.KeyID) {
			r.Fail("LINK_KEY_ID", "no key %q in LINK_KEYS_FILE (it has %v)", c.KeyID, c.Keys.IDs())
		}
	}
	return c
}

// Require records a problem when no keys are configured: a service that signs or checks
// links must not run without them (a key made at start-up would sign links that verify
// nowhere else, and break on the next restart).
func (c Config) Require(r *config.Reader) {
	if c.Keys == nil {
		r.Fail("LINK_KEYS_FILE", "required (or LINK_KEYS): the link keys, a JWKS (go run ./cmd/yactl links keygen KID)")
	}
}

// Signer is the signer of this configuration; its keys must be private.
func (c Config) Signer() (*Signer, error) {
	if c.Keys == nil {
		return nil, fmt.Errorf("no link keys (LINK_KEYS_FILE)")
	}
	return NewSigner(c.Keys, c.KeyID, c.Issuer)
}
