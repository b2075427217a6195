package offerlink

import (
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/demobank/yacredits/pkg/contracts"
)

// legacyParam is the query parameter of links given out before sealed references: a signed
// JWT (EdDSA) whose claims anyone can read. None is made any more; those already out verify
// while their Ed25519 key stays in the set, so that a contract that followed one is still
// reported. Retire the key when the first sealed links go out, and prune it after the link
// lifetime and the reporting window, as any other key (docs/operating.md).
const legacyParam = "token"

// legacy checks a legacy token's signature, issuer and claims. Its links bind no address.
func (v *Verifier) legacy(token string) (Claims, error) {
	var c Claims
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return c, ErrMalformed
	}
	kid := tok.Headers[0].KeyID
	key, ok := v.keys.legacy(kid)
	if kid == "" || !ok {
		return c, fmt.Errorf("%w (%q)", ErrUnknownKey, kid)
	}
	if err := tok.Claims(key, &c); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return Claims{}, ErrForged
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Issuer != v.issuer {
		return c, fmt.Errorf("%w (%q)", ErrIssuer, c.Issuer)
	}
	switch {
	case c.SearchID == "" || !contracts.ValidOfferID(c.Offer):
		err = errors.New("no search_id or offer")
	case !c.ProductType.Valid() || !c.Decision.Valid():
		err = errors.New("product_type or decision")
	case c.IssuedAt <= 0 || c.Expiry <= c.IssuedAt:
		err = errors.New("iat and exp")
	case c.Amount.Min > c.Amount.Max || c.Rate.Min > c.Rate.Max:
		err = errors.New("amount or rate range")
	case (c.ProductType == contracts.ProductLoan) != (c.Term != nil):
		err = errors.New("a term range goes with a loan, and only with one")
	}
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrClaims, err)
	}
	return c, nil
}
