package offerlink

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/demobank/yacredits/pkg/config"
)

// Config is how a service seals or opens links, from the LINK_* variables.
type Config struct {
	// Keys (LINK_KEYS_FILE, or LINK_KEYS holding the document itself) is the key set, from
	// a Secret: offers seals with it, conversions opens with it. Nil when neither is set,
	// which Require refuses (the standalone binary keeps a set in its data directory).
	Keys *KeySet
	// KeyID (LINK_KEY_ID) is the key that seals; empty: the set's first key not retired.
	KeyID string
	// Issuer (LINK_ISSUER) is the iss a legacy token must carry.
	Issuer string
	// Lifetime (LINK_LIFETIME) is how long a link stays valid at most; a link made from a
	// pre-approval expires with it when that comes first.
	Lifetime time.Duration
	// ReportingWindow (LINK_REPORTING_WINDOW) is how long after a link's expiry a contract
	// that followed it may be dated: an application started on the last day may take weeks.
	// A retired key is kept this long after the last link it sealed expired, and 12 days more
	// (KeepRetired).
	ReportingWindow time.Duration
}

// ReadReportingWindow reads LINK_REPORTING_WINDOW alone (for yactl links prune).
func ReadReportingWindow(r *config.Reader) time.Duration {
	return r.Duration("LINK_REPORTING_WINDOW", 30*24*time.Hour, 0, 366*24*time.Hour)
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

		ReportingWindow: ReadReportingWindow(r),
	}
	if len(c.Issuer) > 64 {
		r.Fail("LINK_ISSUER", "longer than 64 characters")
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
		sealing := c.Keys.Sealing()
		if c.KeyID == "" && len(sealing) > 0 {
			c.KeyID = sealing[0]
		}
		switch {
		case c.KeyID == "":
		case !slices.Contains(c.Keys.IDs(), c.KeyID):
			r.Fail("LINK_KEY_ID", "no key %q in LINK_KEYS_FILE (it has %v)", c.KeyID, c.Keys.IDs())
		case !c.Keys.RetiredAt(c.KeyID).IsZero():
			r.Fail("LINK_KEY_ID", "key %q was retired at %s: it opens, it no longer seals", c.KeyID, c.Keys.RetiredAt(c.KeyID).Format(time.RFC3339))
		case !slices.Contains(sealing, c.KeyID):
			r.Fail("LINK_KEY_ID", "key %q is a legacy Ed25519 key: it verifies old links, it does not seal", c.KeyID)
		case len(c.KeyID) > MaxSigningKeyIDLength:
			r.Fail("LINK_KEY_ID", "longer than %d characters: every link carries it", MaxSigningKeyIDLength)
		}
	}
	return c
}

// Require records a problem when no keys are configured: a service that seals or opens
// links must not run without them (a key made at start-up would seal links that open
// nowhere else, and break on the next restart).
func (c Config) Require(r *config.Reader) {
	if c.Keys == nil {
		r.Fail("LINK_KEYS_FILE", "required (or LINK_KEYS): the link keys (go run ./cmd/yactl links keygen KID)")
	}
}

// RequireSealing records a problem when no key can seal (the offers service's need).
func (c Config) RequireSealing(r *config.Reader) {
	c.Require(r)
	if c.Keys != nil && c.KeyID == "" {
		r.Fail("LINK_KEY_ID", "no key in LINK_KEYS_FILE can seal: add one (yactl links add)")
	}
}

// Sealer is the sealer of this configuration.
func (c Config) Sealer() (*Sealer, error) {
	if c.Keys == nil {
		return nil, fmt.Errorf("no link keys (LINK_KEYS_FILE)")
	}
	return NewSealer(c.Keys, c.KeyID)
}

// Verifier opens the links of this configuration's keys, at now (nil: time.Now).
func (c Config) Verifier(now func() time.Time) *Verifier {
	return NewVerifier(c.Keys, c.Issuer, now)
}
