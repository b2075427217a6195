// Package offerlink signs the proposal links the bank gives Yandex and verifies them for the
// bank's site. Every link carries, in its "token" query parameter, a JSON Web Token signed
// with EdDSA (Ed25519) that states which offer of which search the link stands for, with
// the ranges offered and an expiry. A site that holds only the public keys (the JWKS
// document the conversions service serves) can check a link on its own, and nothing in the
// query string besides the token is to be trusted: it is there for people reading logs.
//
// The token holds no personal data: a search id, a product id and the ranges offered.
//
// Keys are Ed25519 JSON Web Keys with a key id ("kid"), several in one set so that a key
// can be rotated without breaking the links already given out: add the new key, sign with
// it (the signing key id), and drop the old one once the links it signed have expired.
package offerlink

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// TokenParam is the query parameter of a proposal link that holds the token.
const TokenParam = "token"

// MaxLinkLength is the longest link we give out: 2,000 characters is what every browser,
// messenger and app link handler is known to keep whole.
const MaxLinkLength = 2000

// Claims is what a link's token states. The registered claims (iss, iat, exp) are in
// seconds since 1970; the rest describe the offer exactly as the answer to Yandex did.
type Claims struct {
	Issuer   string `json:"iss"`
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

// ForOffer builds the claims of an offer made in search searchID, issued at now and
// expiring at the earlier of now+lifetime and validUntil (zero: no such bound).
func ForOffer(issuer, searchID, productID string, o contracts.Offer, now time.Time, lifetime time.Duration, validUntil time.Time) Claims {
	exp := now.Add(lifetime)
	if !validUntil.IsZero() && validUntil.Before(exp) {
		exp = validUntil
	}
	return Claims{
		Issuer: issuer, IssuedAt: now.Unix(), Expiry: exp.Unix(),
		SearchID: searchID, Offer: productID, ProductType: o.ProductType, Decision: o.Decision,
		Amount: o.Amount, Term: o.Term, Rate: o.Rate,
	}
}

// Reasons a token is refused, each an error to test with errors.Is. Reason names them.
var (
	ErrNoToken    = errors.New("the link has no token")
	ErrMalformed  = errors.New("the token is not a well-formed EdDSA JWT")
	ErrUnknownKey = errors.New("the token is signed with a key we do not know")
	ErrSignature  = errors.New("the token's signature does not match its contents")
	ErrExpired    = errors.New("the token has expired")
	ErrIssuer     = errors.New("the token was issued by someone else")
	ErrClaims     = errors.New("the token's claims are incomplete")
	ErrMismatch   = errors.New("the link's query says otherwise than its token")
)

var reasons = []struct {
	err  error
	code string
}{
	{ErrNoToken, "no_token"}, {ErrMalformed, "malformed"}, {ErrUnknownKey, "unknown_key"},
	{ErrSignature, "bad_signature"}, {ErrExpired, "expired"}, {ErrIssuer, "wrong_issuer"},
	{ErrClaims, "bad_claims"}, {ErrMismatch, "link_mismatch"},
}

// Reason is the short code of why err refused a token ("expired", "bad_signature", …), or
// "" for an error that is not a refusal.
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return ""
}

// Signer signs offers' tokens with one key of a set. It writes the compact JWS itself
// (RFC 7515: base64url header, payload and Ed25519 signature, joined by dots), which is a
// few lines: go-jose's general signer cost about 150 µs and 222 allocations an offer, a
// third of a search's whole budget. Tokens are checked by go-jose (Verifier), and the tests
// check every token this writes with it.
type Signer struct {
	key    ed25519.PrivateKey
	prefix string // the encoded header and its dot, the same for every token
	issuer string
}

// NewSigner signs with the key of keys whose id is kid.
func NewSigner(keys *KeySet, kid, issuer string) (*Signer, error) {
	k, ok := keys.private(kid)
	if !ok {
		return nil, fmt.Errorf("no private key %q in the link key set", kid)
	}
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(jose.EdDSA), kid, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("link signer: %w", err)
	}
	return &Signer{key: k.Key.(ed25519.PrivateKey), prefix: base64.RawURLEncoding.EncodeToString(header) + ".",
		issuer: issuer}, nil
}

// Token signs c (its issuer is the signer's).
func (s *Signer) Token(c Claims) (string, error) {
	c.Issuer = s.issuer
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign link token: %w", err)
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(s.prefix)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	buf = append(buf, s.prefix...)
	buf = enc.AppendEncode(buf, payload)
	sig := ed25519.Sign(s.key, buf) // the signing input is header.payload, as encoded
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// Link returns link with c's token added as its TokenParam query parameter (before any
// fragment). A link that would come out longer than MaxLinkLength is an error.
func (s *Signer) Link(link string, c Claims) (string, error) {
	tok, err := s.Token(c)
	if err != nil {
		return "", err
	}
	return withToken(link, tok)
}

// SignOffer adds c's token to both of o's proposal links (those it has): the same token,
// signed once.
func (s *Signer) SignOffer(o *contracts.Offer, c Claims) error {
	tok, err := s.Token(c)
	if err != nil {
		return err
	}
	return WithToken(o, tok)
}

func withToken(link, tok string) (string, error) {
	base, frag, hasFrag := strings.Cut(link, "#")
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
		if strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&") {
			sep = ""
		}
	}
	out := base + sep + TokenParam + "=" + tok // base64url needs no escaping
	if hasFrag {
		out += "#" + frag
	}
	if len(out) > MaxLinkLength {
		return "", fmt.Errorf("signed link is %d characters, more than %d", len(out), MaxLinkLength)
	}
	return out, nil
}

// Verifier checks tokens against a set of public keys.
type Verifier struct {
	keys   jose.JSONWebKeySet
	issuer string
	now    func() time.Time
}

// NewVerifier checks tokens signed by any key of keys and issued by issuer; now judges
// expiry (nil: time.Now).
func NewVerifier(keys *KeySet, issuer string, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{keys: keys.Public(), issuer: issuer, now: now}
}

// Verify checks a token's signature, issuer, claims and expiry.
func (v *Verifier) Verify(token string) (Claims, error) {
	c, err := v.VerifySignature(token)
	if err != nil {
		return c, err
	}
	if !v.now().Before(time.Unix(c.Expiry, 0)) {
		return c, fmt.Errorf("%w at %s", ErrExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// VerifySignature checks everything Verify does but the expiry: a contract signed after a
// link expired may still come from an application started while it was valid.
func (v *Verifier) VerifySignature(token string) (Claims, error) {
	var c Claims
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return c, ErrMalformed
	}
	kid := tok.Headers[0].KeyID
	keys := v.keys.Key(kid)
	if kid == "" || len(keys) == 0 {
		return c, fmt.Errorf("%w (kid %q)", ErrUnknownKey, kid)
	}
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return Claims{}, ErrSignature
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Issuer != v.issuer {
		return c, fmt.Errorf("%w (%q)", ErrIssuer, c.Issuer)
	}
	if err := c.complete(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrClaims, err)
	}
	return c, nil
}

func (c Claims) complete() error {
	switch {
	case c.SearchID == "" || c.Offer == "":
		return errors.New("no search_id or offer")
	case !c.ProductType.Valid():
		return fmt.Errorf("product_type %q", c.ProductType)
	case !c.Decision.Valid():
		return fmt.Errorf("decision %q", c.Decision)
	case c.IssuedAt <= 0 || c.Expiry <= c.IssuedAt:
		return errors.New("iat and exp")
	case c.Amount.Min > c.Amount.Max || c.Rate.Min > c.Rate.Max:
		return errors.New("amount or rate range")
	case (c.ProductType == contracts.ProductLoan) != (c.Term != nil):
		return errors.New("a term range goes with a loan, and only with one")
	}
	return nil
}

// TokenOf is a proposal link's token, "" when it has none (or is no URL).
func TokenOf(link string) string {
	u, err := url.Parse(strings.TrimSpace(link))
	if err != nil {
		return ""
	}
	return u.Query().Get(TokenParam)
}

// VerifyLink checks the token of a proposal link (web or deep) as Verify does, and that the
// link's own search_id and offer parameters, where present, agree with it.
func (v *Verifier) VerifyLink(link string) (Claims, error) {
	u, err := url.Parse(strings.TrimSpace(link))
	if err != nil {
		return Claims{}, fmt.Errorf("%w: not a URL", ErrMalformed)
	}
	q := u.Query()
	tok := q.Get(TokenParam)
	if tok == "" {
		return Claims{}, ErrNoToken
	}
	c, err := v.Verify(tok)
	if err != nil {
		return c, err
	}
	for _, p := range []struct{ name, want string }{{"search_id", c.SearchID}, {"offer", c.Offer}} {
		if got := q.Get(p.name); got != "" && !strings.EqualFold(got, p.want) {
			return c, fmt.Errorf("%w: %s is %q in the query and %q in the token", ErrMismatch, p.name, got, p.want)
		}
	}
	return c, nil
}

// Bounds on what a token holds, so that MaxTokenLength can bound the token.
const (
	MaxKeyIDLength  = 64
	MaxIssuerLength = 64
)

// MaxTokenLength bounds the length of the token of any offer of product productID: the
// longest key id and issuer, a search id of a UUID's 36 characters, and the largest numbers
// a range can hold. The catalog uses it to refuse a link template that signed links would
// push past MaxLinkLength.
func MaxTokenLength(productID string) int {
	header := `{"alg":"EdDSA","kid":"` + strings.Repeat("k", MaxKeyIDLength) + `","typ":"JWT"}`
	big := money.Amount(math.MaxInt64)
	c := Claims{
		Issuer: strings.Repeat("i", MaxIssuerLength), IssuedAt: math.MaxInt64, Expiry: math.MaxInt64,
		SearchID: strings.Repeat("0", 36), Offer: productID, ProductType: contracts.ProductCreditCard,
		Decision: contracts.FullApproved, Amount: contracts.AmountRange{Min: big, Max: big},
		Term: &contracts.TermRange{Min: math.MaxInt32, Max: math.MaxInt32},
		Rate: contracts.RateRange{Min: money.Rate(math.MaxInt64), Max: money.Rate(math.MaxInt64)},
	}
	payload, _ := json.Marshal(c) // a struct of strings and numbers always encodes
	// JSON escaping can lengthen an id; a product id is a slug, so that bound is exact.
	return base64.RawURLEncoding.EncodedLen(len(header)) + 1 + base64.RawURLEncoding.EncodedLen(len(payload)) + 1 +
		base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize)
}

// WithToken gives o's proposal links (those it has) the token tok, exactly as SignOffer
// does: how a replay of a past search puts the tokens the search was answered with on the
// offers it computes again, to compare the two byte for byte.
func WithToken(o *contracts.Offer, tok string) error {
	for _, l := range []*string{&o.ProposalLink.Link, &o.ProposalLink.Deep} {
		if *l == "" {
			continue
		}
		var err error
		if *l, err = withToken(*l, tok); err != nil {
			return err
		}
	}
	return nil
}

// ClaimsOf reads a token's claims WITHOUT checking its signature: for a person explaining a
// past search from the bank's own record, never for a link from outside (Verify).
func ClaimsOf(token string) (Claims, error) {
	var c Claims
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return c, ErrMalformed
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return c, nil
}
