package preapproval

import (
	"encoding/hex"
	"errors"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

// Record is one pre-approved offer for one phone and product.
type Record struct {
	// Hash is phone.Hasher.Sum of the canonical number; the number itself is never kept.
	Hash    [32]byte
	Product contracts.ProductType
	Kind    contracts.OfferDecision
	Limit   money.Amount
	Grade   string
	// ValidUntil is 00:00 Moscow time on the last day the offer stands. Only its Moscow
	// date counts: the offer expires at the end of that day (see Expires).
	ValidUntil time.Time
}

// moscow is fixed at UTC+3 on purpose: Russia has had no daylight saving since 2014, and a
// fixed zone keeps the result independent of the tzdata a container happens to ship.
var moscow = time.FixedZone("MSK", 3*60*60)

const (
	secondsPerDay = 24 * 60 * 60
	moscowOffset  = 3 * 60 * 60
)

// Expires returns the first instant the offer no longer stands: 00:00 Moscow time on the day
// after ValidUntil.
func (r Record) Expires() time.Time { return moscowMidnight(dayOf(r.ValidUntil) + 1) }

// Day is the Moscow calendar date of t, as the export writes a last day (2006-01-02): a
// ValidUntil read back from a record may be in any zone (UTC after a round trip), and its
// UTC date is the day before.
func Day(t time.Time) string { return t.In(moscow).Format("2006-01-02") }

// Expired reports whether the offer has lapsed at now.
func (r Record) Expired(now time.Time) bool { return !now.Before(r.Expires()) }

// dayOf returns the Moscow calendar date of t as days since 1970-01-01.
func dayOf(t time.Time) int32 {
	s := t.Unix() + moscowOffset
	d := s / secondsPerDay
	if s%secondsPerDay < 0 {
		d--
	}
	return int32(d)
}

// moscowMidnight returns 00:00 Moscow time on the day that is days after 1970-01-01.
func moscowMidnight(days int32) time.Time {
	return time.Unix(int64(days)*secondsPerDay-moscowOffset, 0).In(moscow)
}

// MaxGradeLen is the longest grade token accepted.
const MaxGradeLen = 8

// ValidGrade reports whether s is a grade token: 1 to MaxGradeLen ASCII letters, digits,
// '+', '-' or '_'. The credit policy uses the same rule, so a grade the import accepts can be
// named in the policy and the other way round.
func ValidGrade(s string) bool {
	if len(s) == 0 || len(s) > MaxGradeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '+' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// validate checks what the index and the snapshot rely on, so that neither can hold a
// record the CSV reader would have refused.
func (r Record) validate() error {
	switch {
	case !r.Product.Valid():
		return errors.New("record: unknown product type")
	case !r.Kind.Valid():
		return errors.New("record: unknown decision kind")
	case r.Limit <= 0:
		return errors.New("record: limit is not positive")
	case !ValidGrade(r.Grade):
		return errors.New("record: grade is not a token of 1-8 letters, digits, '+', '-' or '_'")
	}
	return nil
}

// Fingerprint identifies a phone-hashing key without revealing it.
type Fingerprint [8]byte

// String returns the fingerprint as hex, for logs.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// KeyFingerprint is h's ID (phone.Hasher.ID) as a snapshot's header keeps it.
func KeyFingerprint(h *phone.Hasher) Fingerprint {
	var f Fingerprint
	_, _ = hex.Decode(f[:], []byte(h.ID())) // 16 hex digits: cannot fail
	return f
}
