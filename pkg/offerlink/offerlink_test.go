package offerlink_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
)

const searchID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func key(t *testing.T, kid string) jose.JSONWebKey {
	t.Helper()
	k, err := offerlink.GenerateKey(kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func loanOffer() contracts.Offer {
	return contracts.Offer{
		ProductType: contracts.ProductLoan, Decision: contracts.PreApproved,
		Amount: contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_000_000)},
		Term:   &contracts.TermRange{Min: 12, Max: 60},
		Rate:   contracts.RateRange{Min: 19_900, Max: 27_900},
	}
}

func signer(t *testing.T, keys *offerlink.KeySet, kid string) *offerlink.Signer {
	t.Helper()
	s, err := offerlink.NewSigner(keys, kid, "demobank")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func at(tm time.Time) func() time.Time { return func() time.Time { return tm } }

func TestLinkVerifiesWithThePublicKeysOnly(t *testing.T) {
	keys := offerlink.NewKeySet(key(t, "2026-12"))
	claims := offerlink.ForOffer("", searchID, "cash-standard", loanOffer(), t0, 7*24*time.Hour, time.Time{})
	link, err := signer(t, keys, "2026-12").Link("https://bank.example/apply?search_id="+searchID+"&offer=cash-standard", claims)
	if err != nil {
		t.Fatal(err)
	}
	// What the site has: the JWKS document, as JSON, with no private part in it.
	doc, err := json.Marshal(keys.Public())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), `"d"`) {
		t.Fatalf("the JWKS document holds a private key: %s", doc)
	}
	pub, err := offerlink.ParseKeySet(doc)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Private() {
		t.Fatal("a set parsed from the JWKS document claims private keys")
	}
	got, err := offerlink.NewVerifier(pub, "demobank", at(t0.Add(time.Hour))).VerifyLink(link)
	if err != nil {
		t.Fatalf("VerifyLink(%s): %v", link, err)
	}
	want := claims
	want.Issuer = "demobank"
	if got.SearchID != searchID || got.Offer != "cash-standard" || got.Amount != want.Amount ||
		*got.Term != *want.Term || got.Rate != want.Rate || got.Expiry != t0.Add(7*24*time.Hour).Unix() || got.Issuer != "demobank" {
		t.Fatalf("claims = %+v, want %+v", got, want)
	}
	if len(link) > 800 {
		t.Errorf("a demo link is %d characters; the token should stay small", len(link))
	}
}

func TestTokenPayloadIsReadableByAnyJWTLibrary(t *testing.T) {
	keys := offerlink.NewKeySet(key(t, "k1"))
	tok, err := signer(t, keys, "k1").Token(offerlink.ForOffer("", searchID, "cash-standard", loanOffer(), t0, time.Hour, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %s", tok)
	}
	var header map[string]any
	var payload map[string]any
	for i, into := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "EdDSA" || header["kid"] != "k1" || header["typ"] != "JWT" {
		t.Errorf("header = %v", header)
	}
	for _, claim := range []string{"iss", "iat", "exp", "search_id", "offer", "product_type", "decision", "amount", "term", "rate"} {
		if _, ok := payload[claim]; !ok {
			t.Errorf("payload has no %q: %v", claim, payload)
		}
	}
	if a := payload["amount"].(map[string]any); a["min"] != 30000.0 || a["max"] != 1000000.0 {
		t.Errorf("amount is roubles as numbers: %v", a)
	}
}

func TestRefusals(t *testing.T) {
	oldKey, newKey, foreign := key(t, "2026-11"), key(t, "2026-12"), key(t, "2026-12")
	both := offerlink.NewKeySet(oldKey, newKey)
	claims := offerlink.ForOffer("", searchID, "cash-standard", loanOffer(), t0, 24*time.Hour, time.Time{})
	link := func(keys *offerlink.KeySet, kid string, c offerlink.Claims) string {
		l, err := signer(t, keys, kid).Link("https://bank.example/apply?search_id="+searchID+"&offer=cash-standard", c)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	good := link(both, "2026-12", claims)
	tok, _ := url.Parse(good)
	token := tok.Query().Get("token")
	parts := strings.Split(token, ".")
	// The same header and signature over a payload whose amount was raised.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	raised := strings.Replace(string(payload), `"max":1000000`, `"max":9000000`, 1)
	tampered := strings.Replace(good, parts[1], base64.RawURLEncoding.EncodeToString([]byte(raised)), 1)
	if tampered == good {
		t.Fatal("tampering changed nothing")
	}
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"2026-12"}`)) + "." + parts[1] + "."

	tests := []struct {
		name     string
		link     string
		verifier *offerlink.Verifier
		want     error
		reason   string
	}{
		{"good", good, offerlink.NewVerifier(both, "demobank", at(t0)), nil, ""},
		{"signed with the old key, both in the set (rotation)", link(both, "2026-11", claims),
			offerlink.NewVerifier(both, "demobank", at(t0)), nil, ""},
		{"old key dropped from the set", link(both, "2026-11", claims),
			offerlink.NewVerifier(offerlink.NewKeySet(newKey), "demobank", at(t0)), offerlink.ErrUnknownKey, "unknown_key"},
		{"a foreign key under our key id", link(offerlink.NewKeySet(foreign), "2026-12", claims),
			offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrSignature, "bad_signature"},
		{"payload tampered", tampered, offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrSignature, "bad_signature"},
		{"alg none", "https://bank.example/apply?token=" + unsigned, offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrMalformed, "malformed"},
		{"expired to the second", good, offerlink.NewVerifier(both, "demobank", at(t0.Add(24*time.Hour))), offerlink.ErrExpired, "expired"},
		{"a second before expiry", good, offerlink.NewVerifier(both, "demobank", at(t0.Add(24*time.Hour-time.Second))), nil, ""},
		{"another issuer", good, offerlink.NewVerifier(both, "otherbank", at(t0)), offerlink.ErrIssuer, "wrong_issuer"},
		{"no token", "https://bank.example/apply?search_id=" + searchID, offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrNoToken, "no_token"},
		{"garbage token", "https://bank.example/apply?token=abc.def", offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrMalformed, "malformed"},
		{"query's offer edited", strings.Replace(good, "offer=cash-standard", "offer=cash-premium", 1),
			offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrMismatch, "link_mismatch"},
		{"query's search_id edited", strings.Replace(good, "search_id=e2b4948b", "search_id=00000000", 1),
			offerlink.NewVerifier(both, "demobank", at(t0)), offerlink.ErrMismatch, "link_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.verifier.VerifyLink(tt.link)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("VerifyLink = %v, want %v", err, tt.want)
			}
			if got := offerlink.Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestExpiryIsTheEarlierOfLifetimeAndValidity(t *testing.T) {
	valid := t0.Add(48 * time.Hour)
	for _, tt := range []struct {
		lifetime time.Duration
		until    time.Time
		want     time.Time
	}{
		{7 * 24 * time.Hour, valid, valid},
		{24 * time.Hour, valid, t0.Add(24 * time.Hour)},
		{24 * time.Hour, time.Time{}, t0.Add(24 * time.Hour)},
	} {
		c := offerlink.ForOffer("", searchID, "x", loanOffer(), t0, tt.lifetime, tt.until)
		if c.Expiry != tt.want.Unix() || c.IssuedAt != t0.Unix() {
			t.Errorf("lifetime %s, valid until %s: exp %d, want %d", tt.lifetime, tt.until, c.Expiry, tt.want.Unix())
		}
	}
}

func TestLinkPlacement(t *testing.T) {
	keys := offerlink.NewKeySet(key(t, "k"))
	s := signer(t, keys, "k")
	c := offerlink.ForOffer("", searchID, "x", loanOffer(), t0, time.Hour, time.Time{})
	for _, tt := range []struct{ in, prefix, suffix string }{
		{"https://bank.example/apply", "https://bank.example/apply?token=", ""},
		{"https://bank.example/apply?a=1", "https://bank.example/apply?a=1&token=", ""},
		{"demobank://apply?search_id=" + searchID + "#top", "demobank://apply?search_id=" + searchID + "&token=", "#top"},
	} {
		got, err := s.Link(tt.in, c)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, tt.prefix) || !strings.HasSuffix(got, tt.suffix) {
			t.Errorf("Link(%s) = %s", tt.in, got)
		}
		if _, err := offerlink.NewVerifier(keys, "demobank", at(t0)).VerifyLink(got); err != nil {
			t.Errorf("VerifyLink(%s): %v", got, err)
		}
	}
	if _, err := s.Link("https://bank.example/"+strings.Repeat("a", offerlink.MaxLinkLength), c); err == nil {
		t.Error("a link past MaxLinkLength was signed")
	}
}

func TestParseKeySet(t *testing.T) {
	good, _ := offerlink.NewKeySet(key(t, "a"), key(t, "b")).Marshal()
	dup, _ := offerlink.NewKeySet(key(t, "a"), key(t, "a")).Marshal()
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"two keys", string(good), ""},
		{"repeated kid", string(dup), "repeated"},
		{"empty", `{"keys":[]}`, "empty"},
		{"not JSON", `keys`, "invalid"},
		{"an RSA key", `{"keys":[{"kty":"RSA","kid":"r","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}`, "not an Ed25519 key"},
		{"bad kid", strings.Replace(string(good), `"kid":"a"`, `"kid":"a b"`, 1), "kid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := offerlink.ParseKeySet([]byte(tt.doc))
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("ParseKeySet: %v, want %q", err, tt.want)
			}
		})
	}
	keys, _ := offerlink.ParseKeySet(good)
	if !keys.Private() || strings.Join(keys.IDs(), ",") != "a,b" {
		t.Errorf("parsed set: private %v, ids %v", keys.Private(), keys.IDs())
	}
	if _, err := offerlink.NewSigner(keys, "c", "x"); err == nil {
		t.Error("a signer for a key id not in the set")
	}
}

func TestMaxTokenLengthBoundsRealTokens(t *testing.T) {
	kid := strings.Repeat("k", offerlink.MaxKeyIDLength)
	keys := offerlink.NewKeySet(key(t, kid))
	s, err := offerlink.NewSigner(keys, kid, strings.Repeat("i", offerlink.MaxIssuerLength))
	if err != nil {
		t.Fatal(err)
	}
	o := loanOffer()
	o.Amount = contracts.AmountRange{Min: money.Roubles(99_999_999), Max: money.Roubles(999_999_999)}
	o.Rate = contracts.RateRange{Min: 291_999, Max: 292_000}
	tok, err := s.Token(offerlink.ForOffer("", searchID, "cash-standard", o, t0, 365*24*time.Hour, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	if bound := offerlink.MaxTokenLength("cash-standard"); len(tok) > bound || bound > 2*len(tok) {
		t.Errorf("token of %d characters, bound %d: not a bound, or a loose one", len(tok), bound)
	}
}

// What signing costs an offer: go test ./pkg/offerlink -run '^$' -bench SignOffer -benchmem
func BenchmarkSignOffer(b *testing.B) {
	k, _ := offerlink.GenerateKey("2026-12")
	s, err := offerlink.NewSigner(offerlink.NewKeySet(k), "2026-12", "yacredits")
	if err != nil {
		b.Fatal(err)
	}
	o := loanOffer()
	o.ProposalLink = contracts.ProposalLink{Link: "https://bank.example/apply?search_id=" + searchID + "&offer=cash-standard",
		Deep: "demobank://apply?search_id=" + searchID}
	c := offerlink.ForOffer("", searchID, "cash-standard", o, t0, time.Hour, time.Time{})
	b.ResetTimer()
	for b.Loop() {
		signed := o
		if err := s.SignOffer(&signed, c); err != nil {
			b.Fatal(err)
		}
	}
}
