package offerlink_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/offerlink"
)

const searchID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func key(t testing.TB, kid string) jose.JSONWebKey {
	t.Helper()
	k, err := offerlink.GenerateKey(kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const (
	webLink  = "https://bank.example/apply"
	deepLink = "demobank://apply"
)

func loanOffer() contracts.Offer {
	return contracts.Offer{
		ProductType: contracts.ProductLoan, Decision: contracts.PreApproved,
		Amount:       contracts.AmountRange{Min: money.Roubles(30_000), Max: money.Roubles(1_234_567)},
		Term:         &contracts.TermRange{Min: 12, Max: 60},
		Rate:         contracts.RateRange{Min: 19_900, Max: 27_900},
		ProposalLink: contracts.ProposalLink{Link: webLink, Deep: deepLink},
	}
}

func sealer(t testing.TB, keys *offerlink.KeySet, kid string) *offerlink.Sealer {
	t.Helper()
	s, err := offerlink.NewSealer(keys, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seal makes o's reference and returns the links as Yandex is sent them.
func seal(t testing.TB, s *offerlink.Sealer, o contracts.Offer, c offerlink.Claims) (web, deep, ref string) {
	t.Helper()
	ref, err := s.Seal(&o, c)
	if err != nil {
		t.Fatal(err)
	}
	fill := func(l string) string { return strings.Replace(l, contracts.RefMarker, ref, 1) }
	return fill(o.ProposalLink.Link), fill(o.ProposalLink.Deep), ref
}

func at(tm time.Time) func() time.Time { return func() time.Time { return tm } }

// A link says nothing of the client: none of the offer's figures, its product, its
// decision or its search can be read from it, in any encoding, and two links of the same
// offer look unrelated.
func TestLinkRevealsNothingButAReference(t *testing.T) {
	keys := offerlink.NewKeySet(key(t, "2026-12"))
	s := sealer(t, keys, "2026-12")
	o := loanOffer()
	c := offerlink.ForOffer(searchID, "cash-standard", o, t0, t0.Add(7*24*time.Hour))
	web, deep, ref := seal(t, s, o, c)
	_, _, again := seal(t, s, o, c)
	if ref == again {
		t.Error("two references of one offer are equal: a link would give away that two clicks are one offer")
	}
	if web != webLink+"?ref="+ref || deep != deepLink+"?ref="+ref {
		t.Fatalf("links %q and %q, want the catalog's with ?ref=%s", web, deep, ref)
	}
	payload, err := base64.RawURLEncoding.DecodeString(ref[strings.Index(ref, "~")+1:])
	if err != nil {
		t.Fatal(err)
	}
	uuidBytes, _ := uuidBinary(searchID)
	readable := []string{web, string(payload), ref}
	secrets := []string{"cash-standard", "1234567", "123456700", "27900", "27.9", "pre_approved", "loan", searchID,
		strings.ReplaceAll(searchID, "-", ""), string(uuidBytes)}
	for _, r := range readable {
		for _, secret := range secrets {
			if strings.Contains(strings.ToLower(r), strings.ToLower(secret)) {
				t.Errorf("%q can be read from the link (%.40q…)", secret, r)
			}
		}
	}
	for _, b := range [][]byte{uuidBytes, []byte("cash-standard")} {
		if bytes.Contains(payload, b) {
			t.Errorf("the sealed payload holds %x in clear", b)
		}
	}
	if len(web) > offerlink.MaxLinkLength || len(deep) > offerlink.MaxLinkLength {
		t.Errorf("links of %d and %d bytes, more than %d", len(web), len(deep), offerlink.MaxLinkLength)
	}
}

func uuidBinary(id string) ([]byte, error) {
	var out []byte
	for h := strings.ReplaceAll(id, "-", ""); len(h) >= 2; h = h[2:] {
		v, err := strconv.ParseUint(h[:2], 16, 8)
		if err != nil {
			return nil, err
		}
		out = append(out, byte(v))
	}
	return out, nil
}

// What a link was sealed with is what opening it gives back, for every shape of offer and
// every spelling of the search id.
func TestOpenGivesBackTheClaims(t *testing.T) {
	keys := offerlink.NewKeySet(key(t, "k"))
	v := offerlink.NewVerifier(keys, "", at(t0))
	card := loanOffer()
	card.ProductType, card.Term, card.Decision = contracts.ProductCreditCard, nil, contracts.FullApproved
	card.ProposalLink.Deep = ""
	big := loanOffer()
	big.Amount = contracts.AmountRange{Min: 1, Max: money.Roubles(100_000_000)}
	big.Term = &contracts.TermRange{Min: 1, Max: 600}
	big.Rate = contracts.RateRange{Min: 0, Max: 1_000_000}
	tests := []struct {
		name     string
		searchID string
		offer    contracts.Offer
	}{
		{"loan", searchID, loanOffer()},
		{"card, web link only", searchID, card},
		{"upper case search id, as Yandex spelled it", strings.ToUpper(searchID), loanOffer()},
		{"mixed case", "E2b4948B-7d8a-4EEC-875c-b1C11d7d8372", loanOffer()},
		{"the largest figures", searchID, big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := offerlink.ForOffer(tt.searchID, "cash-standard", tt.offer, t0, t0.Add(7*24*time.Hour))
			web, deep, ref := seal(t, sealer(t, keys, "k"), tt.offer, c)
			for _, in := range []string{web, deep, ref} {
				if in == "" {
					continue
				}
				got, err := v.Verify(in)
				if err != nil {
					t.Fatalf("Verify(%q) = %v", in, err)
				}
				if !reflect.DeepEqual(got, c) {
					t.Fatalf("opened %+v, sealed %+v", got, c)
				}
				if got.SearchID != tt.searchID {
					t.Fatalf("search id %q, sealed as spelled %q", got.SearchID, tt.searchID)
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	oldKey, newKey, foreign := key(t, "2026-11"), key(t, "2026-12"), key(t, "2026-12")
	both := offerlink.NewKeySet(oldKey, newKey)
	c := offerlink.ForOffer(searchID, "cash-standard", loanOffer(), t0, t0.Add(24*time.Hour))
	link := func(keys *offerlink.KeySet, kid string, o contracts.Offer) string {
		web, _, _ := seal(t, sealer(t, keys, kid), o, c)
		return web
	}
	good := link(both, "2026-12", loanOffer())
	ref := offerlink.RefOf(good)
	// One bit of the sealed claims flipped, and the claims of another offer under this link.
	raw, _ := base64.RawURLEncoding.DecodeString(ref[len("2026-12~"):])
	raw[len(raw)/2] ^= 1
	flipped := webLink + "?ref=2026-12~" + base64.RawURLEncoding.EncodeToString(raw)
	withQuery := loanOffer()
	withQuery.ProposalLink.Link = webLink + "?search_id=" + searchID + "&offer=cash-standard"
	queried := link(both, "2026-12", withQuery)
	opaqueOffer := loanOffer()
	opaqueOffer.ProposalLink.Link = "bankapp:offer/1"
	opaque := link(both, "2026-12", opaqueOffer)
	v := offerlink.NewVerifier(both, "demobank", at(t0))

	tests := []struct {
		name     string
		link     string
		verifier *offerlink.Verifier
		want     error
		reason   string
	}{
		{"good", good, v, nil, ""},
		{"the bare reference", ref, v, nil, ""},
		{"the deep link", strings.Replace(good, webLink, deepLink, 1), v, nil, ""},
		{"host in capitals (hosts are case-insensitive)", strings.Replace(good, "bank.example", "BANK.example", 1), v, nil, ""},
		{"sealed with the old key, both in the set (rotation)", link(both, "2026-11", loanOffer()), v, nil, ""},
		{"old key dropped from the set", link(both, "2026-11", loanOffer()),
			offerlink.NewVerifier(offerlink.NewKeySet(newKey), "", at(t0)), offerlink.ErrUnknownKey, "unknown_key"},
		{"a foreign key under our key id", link(offerlink.NewKeySet(foreign), "2026-12", loanOffer()), v, offerlink.ErrForged, "forged"},
		{"a bit flipped", flipped, v, offerlink.ErrForged, "forged"},
		{"another key's id on our sealed claims", strings.Replace(good, "2026-12~", "2026-11~", 1), v, offerlink.ErrForged, "forged"},
		{"the reference on another site", strings.Replace(good, webLink, "https://evil.example/phish", 1), v, offerlink.ErrAddress, "wrong_address"},
		{"the reference on another path", strings.Replace(good, webLink, "https://bank.example/apply/other", 1), v, offerlink.ErrAddress, "wrong_address"},
		{"the reference on http", strings.Replace(good, "https:", "http:", 1), v, offerlink.ErrAddress, "wrong_address"},
		{"an opaque deep link", opaque, v, nil, ""},
		{"an opaque deep link's reference on another", strings.Replace(opaque, "offer/1", "offer/2", 1), v, offerlink.ErrAddress, "wrong_address"},
		{"expired to the second", good, offerlink.NewVerifier(both, "", at(t0.Add(24*time.Hour))), offerlink.ErrExpired, "expired"},
		{"a second before expiry", good, offerlink.NewVerifier(both, "", at(t0.Add(24*time.Hour-time.Second))), nil, ""},
		{"no reference", webLink + "?search_id=" + searchID, v, offerlink.ErrNoRef, "no_ref"},
		{"garbage", webLink + "?ref=2026-12~abc", v, offerlink.ErrMalformed, "malformed"},
		{"not base64url", webLink + "?ref=2026-12~" + strings.Repeat("*", 80), v, offerlink.ErrMalformed, "malformed"},
		{"no key id", webLink + "?ref=~" + ref[len("2026-12~"):], v, offerlink.ErrMalformed, "malformed"},
		{"not a URL", "https://bank.example/%zz?ref=" + ref, v, offerlink.ErrMalformed, "malformed"},
		{"query's offer edited", strings.Replace(queried, "offer=cash-standard", "offer=cash-premium", 1), v, offerlink.ErrMismatch, "link_mismatch"},
		{"query's search_id edited", strings.Replace(queried, "search_id=e2b4948b", "search_id=00000000", 1), v, offerlink.ErrMismatch, "link_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.verifier.Verify(tt.link)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if got := offerlink.Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
			// Check is Verify less the expiry: the one check the intake makes too.
			if _, cerr := tt.verifier.Check(tt.link); tt.want != offerlink.ErrExpired && offerlink.Reason(cerr) != tt.reason {
				t.Errorf("Check refuses with %v, Verify with %v", cerr, err)
			}
		})
	}
}

// legacyToken is a token of the scheme before sealed references: an EdDSA JWT.
func legacyToken(t *testing.T, priv ed25519.PrivateKey, kid, issuer string, c offerlink.Claims) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Issuer = issuer
	tok, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A link given out before sealed references still verifies while its key is in the set, so
// that the contracts that follow it are reported; and only with that key.
func TestLegacyTokensVerifyWhileTheirKeyIsKept(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	legacy := jose.JSONWebKey{Key: priv, KeyID: "2026-11", Algorithm: string(jose.EdDSA), Use: "sig"}
	keys := offerlink.NewKeySet(key(t, "2026-12"), legacy)
	c := offerlink.ForOffer(searchID, "cash-standard", loanOffer(), t0, t0.Add(24*time.Hour))
	good := webLink + "?search_id=" + searchID + "&offer=cash-standard&token=" + legacyToken(t, priv, "2026-11", "demobank", c)
	v := offerlink.NewVerifier(keys, "demobank", at(t0))
	got, err := v.Verify(good)
	if err != nil || got.Amount != c.Amount || got.SearchID != searchID {
		t.Fatalf("Verify(legacy) = %+v, %v", got, err)
	}
	// Retired, it keeps its public half alone, and still verifies.
	retired, err := keys.Retire("2026-11", t0)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := retired.Marshal(); strings.Contains(string(data), `"d":`) {
		t.Errorf("a retired legacy key keeps its private half: %s", data)
	}
	if _, err := offerlink.NewVerifier(retired, "demobank", at(t0)).Verify(good); err != nil {
		t.Errorf("the retired legacy key no longer verifies: %v", err)
	}
	for name, tt := range map[string]struct {
		link   string
		v      *offerlink.Verifier
		reason string
	}{
		"another key under its id": {webLink + "?token=" + legacyToken(t, other, "2026-11", "demobank", c), v, "forged"},
		"another issuer":           {webLink + "?token=" + legacyToken(t, priv, "2026-11", "otherbank", c), v, "wrong_issuer"},
		"its key pruned":           {good, offerlink.NewVerifier(offerlink.NewKeySet(key(t, "2026-12")), "demobank", at(t0)), "unknown_key"},
		"a sealing key's id":       {webLink + "?token=" + legacyToken(t, priv, "2026-12", "demobank", c), v, "unknown_key"},
	} {
		if _, err := tt.v.Verify(tt.link); offerlink.Reason(err) != tt.reason {
			t.Errorf("%s: %v, want %s", name, err, tt.reason)
		}
	}
}

// A key retired at the rotation keeps opening what it sealed until pruned, and is pruned
// only once the link lifetime and the reporting window have passed since.
func TestRotateRetirePrune(t *testing.T) {
	const lifetime, window = 7 * 24 * time.Hour, 30 * 24 * time.Hour
	old := offerlink.NewKeySet(key(t, "2026-11"))
	c := offerlink.ForOffer(searchID, "cash-standard", loanOffer(), t0, t0.Add(lifetime))
	oldLink, _, _ := seal(t, sealer(t, old, "2026-11"), loanOffer(), c)

	rotated, err := old.With(key(t, "2026-12")).Retire("2026-11", t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := rotated.Sealing(); len(got) != 1 || got[0] != "2026-12" {
		t.Fatalf("sealing keys after the rotation: %v", got)
	}
	if _, err := rotated.Retire("2026-11", t0); err == nil {
		t.Error("a key retired twice")
	}
	// Written and read back, as an operator's file.
	data, _ := rotated.Marshal()
	rotated, err = offerlink.ParseKeySet(data)
	if err != nil || !rotated.RetiredAt("2026-11").Equal(t0) {
		t.Fatalf("read back: %v, retired at %v", err, rotated.RetiredAt("2026-11"))
	}
	if _, err := offerlink.NewVerifier(rotated, "", at(t0)).Check(oldLink); err != nil {
		t.Fatalf("the retired key no longer opens its link: %v", err)
	}
	keep := offerlink.KeepRetired(lifetime, window)
	if keep < lifetime+window+12*24*time.Hour {
		t.Fatalf("a retired key kept %s: less than its links' life, the window, a day's edge and Yandex's 11 days", keep)
	}
	// An hour before its time, prune keeps it; a second after, it drops it.
	kept, dropped := rotated.Prune(t0.Add(keep - time.Hour).Add(-keep))
	if len(dropped) != 0 || len(kept.IDs()) != 2 {
		t.Fatalf("pruned %v before its time", dropped)
	}
	kept, dropped = rotated.Prune(t0.Add(keep + time.Second).Add(-keep))
	if len(dropped) != 1 || dropped[0] != "2026-11" || len(kept.IDs()) != 1 {
		t.Fatalf("pruned %v, kept %v", dropped, kept.IDs())
	}
	if _, err := offerlink.NewVerifier(kept, "", at(t0)).Check(oldLink); offerlink.Reason(err) != "unknown_key" {
		t.Fatalf("a pruned key's link: %v", err)
	}
}

func TestParseKeySet(t *testing.T) {
	good, _ := offerlink.NewKeySet(key(t, "a")).Marshal()
	short := `{"keys":[{"kty":"oct","kid":"s","k":"` + base64.RawURLEncoding.EncodeToString([]byte("sixteen byte key")) + `"}]}`
	tests := []struct {
		name, doc, want string
	}{
		{"good", string(good), ""},
		{"empty", `{"keys":[]}`, "empty"},
		{"a 128-bit key", short, "16 bytes, want 32"},
		{"repeated kid", strings.Replace(`{"keys":[K,K]}`, "K", string(good[len(`{"keys":[`):len(good)-2]), 2), "repeated"},
		{"an RSA-sized junk key", `{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"AA","y":"AA"}]}`, "link keys"},
		{"retired key not in the set", strings.TrimSuffix(string(good), "}") + `,"retired":{"zz":"2026-12-01T00:00:00Z"}}`, `no key "zz"`},
		{"not JSON", `keys`, "link keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := offerlink.ParseKeySet([]byte(tt.doc))
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// LinkLength, which the catalog checks templates with, bounds every real link.
func TestLinkLengthBoundsRealLinks(t *testing.T) {
	keys := offerlink.NewKeySet(key(t, strings.Repeat("k", offerlink.MaxSigningKeyIDLength)))
	o := loanOffer()
	o.Amount = contracts.AmountRange{Min: money.Roubles(100_000_000), Max: money.Roubles(100_000_000)}
	o.Term = &contracts.TermRange{Min: 1200, Max: 1200}
	o.Rate = contracts.RateRange{Min: 2_000_000, Max: 2_000_000}
	const product = "a-rather-long-product-id"
	c := offerlink.ForOffer(strings.ToUpper(searchID), product, o, t0, t0.Add(365*24*time.Hour))
	web, deep, ref := seal(t, sealer(t, keys, keys.IDs()[0]), o, c)
	if len(ref) > offerlink.MaxRefLength(product) {
		t.Errorf("a reference of %d characters, bound %d", len(ref), offerlink.MaxRefLength(product))
	}
	for tmpl, l := range map[string]string{webLink: web, deepLink: deep} {
		if bound := offerlink.LinkLength(tmpl, product); len(l) > bound {
			t.Errorf("%s: %d characters, bound %d", tmpl, len(l), bound)
		}
	}
	if u, err := url.Parse(web); err != nil || u.Query().Get("ref") != ref {
		t.Errorf("the reference does not survive URL parsing: %v", err)
	}
}

// The CPU of a search's links: a loan search of three offers, each with a web and a deep
// link.
func BenchmarkSealSearch(b *testing.B) {
	s := sealer(b, offerlink.NewKeySet(key(b, "2026-12")), "2026-12")
	c := offerlink.ForOffer(searchID, "cash-standard", loanOffer(), t0, t0.Add(7*24*time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		for range 3 {
			o := loanOffer()
			if _, err := s.Seal(&o, c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	keys := offerlink.NewKeySet(key(b, "2026-12"))
	c := offerlink.ForOffer(searchID, "cash-standard", loanOffer(), t0, t0.Add(7*24*time.Hour))
	web, _, _ := seal(b, sealer(b, keys, "2026-12"), loanOffer(), c)
	v := offerlink.NewVerifier(keys, "", at(t0))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(web); err != nil {
			b.Fatal(err)
		}
	}
}
