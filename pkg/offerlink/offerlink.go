// Package offerlink makes the reference a proposal link carries, and opens it again for the
// bank's site and for the conversions the bank reports.
//
// A link's URL says nothing about the client: its "ref" query parameter is the offer's
// claims (which search, which product, the ranges offered, the expiry and a keyed digest of
// the link's own address) sealed with XChaCha20-Poly1305 under a key only the bank's
// services hold, prefixed with that key's id:
//
//	https://bank.example/apply?ref=2026-12~<base64url(24-byte nonce | ciphertext | tag)>
//
// Sealing is authenticated encryption, so a reference is both unreadable and tamper-evident
// without a signature, and it carries what the offer was, so it can be opened for the
// link's whole lifetime and after, with nothing stored per link and no per-search write
// beyond the search's record. Why this scheme and not a signed reference or a random one is
// in docs/security.md ("Proposal links").
//
// Links given out before this scheme carry a signed JSON Web Token in a "token" parameter
// (EdDSA, readable by anyone): they still verify with their Ed25519 key while it is in the
// set (legacy.go), and no new one is made.
package offerlink

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
)

// RefParam is the query parameter of a proposal link that holds its reference.
const RefParam = "ref"

// MaxLinkLength is the longest link we give out, reference included: a link Yandex shows and
// a browser keeps in its history and sends on as a Referer should be short.
const MaxLinkLength = 250

// Claims is what a link's reference says: which offer of which search it is, what was
// offered, and until when (iat and exp in seconds since 1970).
type Claims struct {
	// Issuer is a legacy token's iss claim; a sealed reference has none (only the bank holds
	// its keys).
	Issuer   string `json:"iss,omitempty"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	// SearchID is the Yandex search the offer was made in, as the request spelled it.
	SearchID string `json:"search_id"`
	// Offer is the catalog's product id.
	Offer       string                  `json:"offer"`
	ProductType contracts.ProductType   `json:"product_type"`
	Decision    contracts.OfferDecision `json:"decision"`
	Amount      contracts.AmountRange   `json:"amount"`
	Term        *contracts.TermRange    `json:"term,omitempty"` // loans only
	Rate        contracts.RateRange     `json:"rate"`
}

// ForOffer builds the claims of an offer made in search searchID (as spelled), issued at now
// and expiring at until.
func ForOffer(searchID, productID string, o contracts.Offer, now, until time.Time) Claims {
	return Claims{
		IssuedAt: now.Unix(), Expiry: until.Unix(),
		SearchID: searchID, Offer: productID, ProductType: o.ProductType, Decision: o.Decision,
		Amount: o.Amount, Term: o.Term, Rate: o.Rate,
	}
}

// ReportableUntil is the last instant a contract that followed the link may be dated: its
// expiry plus the reporting window (an application started on the last day may be signed
// weeks later).
func (c Claims) ReportableUntil(window time.Duration) time.Time {
	return time.Unix(c.Expiry, 0).Add(window)
}

// Reasons a link is refused, each an error to test with errors.Is. Reason names them.
var (
	ErrNoRef      = errors.New("the link has no reference")
	ErrMalformed  = errors.New("the reference is not one we make")
	ErrUnknownKey = errors.New("the reference is sealed with a key we do not hold")
	ErrForged     = errors.New("the reference was not made by us, or was altered")
	ErrExpired    = errors.New("the link has expired")
	ErrIssuer     = errors.New("the token was issued by someone else")
	ErrClaims     = errors.New("the reference's claims are incomplete")
	ErrMismatch   = errors.New("the link's query says otherwise than its reference")
	ErrAddress    = errors.New("the link's address is not the one its reference was made for")
)

var reasons = []struct {
	err  error
	code string
}{
	{ErrNoRef, "no_ref"}, {ErrMalformed, "malformed"}, {ErrUnknownKey, "unknown_key"},
	{ErrForged, "forged"}, {ErrExpired, "expired"}, {ErrIssuer, "wrong_issuer"},
	{ErrClaims, "bad_claims"}, {ErrMismatch, "link_mismatch"}, {ErrAddress, "wrong_address"},
}

// Reason is the short code of why err refused a link ("expired", "forged", …), or "" for an
// error that is not a refusal.
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return ""
}

// Verifier opens references with a set of keys, the retired ones included.
type Verifier struct {
	keys   *KeySet
	issuer string // a legacy token's
	now    func() time.Time
}

// NewVerifier opens references sealed with any key of keys; issuer is the iss a legacy
// token must carry; now judges expiry (nil: time.Now).
func NewVerifier(keys *KeySet, issuer string, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys, issuer: issuer, now: now}
}

// Check is the one check of a link, given whole or as its bare reference, that the bank's
// site (Verify) and the conversions intake both make: the reference is ours, unaltered, and
// complete; a whole link's address is the one the reference was made for, and its search_id
// and offer parameters, where it has them, agree with it. It does not judge time: a click
// must come before the expiry (Verify), a contract within the reporting window after it.
func (v *Verifier) Check(linkOrRef string) (Claims, error) {
	s := strings.TrimSpace(linkOrRef)
	if !strings.ContainsAny(s, ":/?") { // a bare reference or legacy token: no address to check
		if strings.Contains(s, refSep) {
			return v.open(s, "")
		}
		return v.legacy(s)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return Claims{}, fmt.Errorf("%w: not an absolute URL", ErrMalformed)
	}
	q := u.Query()
	var c Claims
	switch ref, tok := q.Get(RefParam), q.Get(legacyParam); {
	case ref != "":
		c, err = v.open(ref, address(u))
	case tok != "":
		c, err = v.legacy(tok)
	default:
		return Claims{}, ErrNoRef
	}
	if err != nil {
		return c, err
	}
	for _, p := range []struct{ name, want string }{{"search_id", c.SearchID}, {"offer", c.Offer}} {
		if got := q.Get(p.name); got != "" && !strings.EqualFold(got, p.want) {
			return c, fmt.Errorf("%w: %s is %q in the query and %q in the reference", ErrMismatch, p.name, got, p.want)
		}
	}
	return c, nil
}

// Verify is Check and the link not yet expired: whether a click on it may still apply. An
// expired link's claims come back with ErrExpired, for the back office.
func (v *Verifier) Verify(linkOrRef string) (Claims, error) {
	c, err := v.Check(linkOrRef)
	if err != nil {
		return c, err
	}
	if !v.now().Before(time.Unix(c.Expiry, 0)) {
		return c, fmt.Errorf("%w at %s", ErrExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// RefOf is a proposal link's reference (or legacy token), "" when it has none.
func RefOf(link string) string {
	u, err := url.Parse(strings.TrimSpace(link))
	if err != nil {
		return ""
	}
	q := u.Query()
	if r := q.Get(RefParam); r != "" {
		return r
	}
	return q.Get(legacyParam)
}

// address is what a reference binds of its link: scheme, host and path (or an opaque
// URI's whole opaque part), the parts that say where the link leads (case-folded where URLs
// are case-insensitive).
func address(u *url.URL) string {
	if u.Opaque != "" {
		return strings.ToLower(u.Scheme) + ":" + u.Opaque
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + u.EscapedPath()
}

// placeholder is link with the reference's parameter added (before any fragment), its value
// contracts.RefMarker: what a search's record stores, Search.Data putting the reference in.
func placeholder(link string) string {
	base, frag, hasFrag := strings.Cut(link, "#")
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
		if strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&") {
			sep = ""
		}
	}
	out := base + sep + RefParam + "=" + contracts.RefMarker
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// Placeholders puts the reference's place in o's links, as Seal does: for a replay of a
// search, to compare with its record byte for byte.
func Placeholders(o *contracts.Offer) {
	for _, l := range []*string{&o.ProposalLink.Link, &o.ProposalLink.Deep} {
		if *l != "" {
			*l = placeholder(*l)
		}
	}
}

// LinkLength is how long link can come out for an offer of product productID, reference
// included, at most: the catalog refuses a template that could exceed MaxLinkLength.
func LinkLength(link, productID string) int {
	return len(placeholder(link)) - len(contracts.RefMarker) + MaxRefLength(productID)
}
