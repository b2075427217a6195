package offerlink

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

// refSep parts a reference's key id from its sealed claims: '~' is in neither (nor in a
// legacy token), and a URL's query keeps it as it is (RFC 3986 unreserved).
const refSep = "~"

// refVersion is the layout of the sealed claims (encodeClaims); it is authenticated with the
// key id, so a reference cannot be opened as another layout.
const refVersion = 1

// Bounds that keep a reference short (MaxRefLength): the catalog holds amounts, terms and
// rates within them, and a signing key's id within MaxSigningKeyIDLength.
const (
	MaxSigningKeyIDLength = 16
	maxAddresses          = 2 // a web link and a deep link
	digestSize            = 8 // of an address: 64 bits, keyed, checked online only
)

var enc = base64.RawURLEncoding

// Sealer makes the references of offers' links with one key. It is safe for concurrent use.
type Sealer struct {
	kid  string
	aead cipher.AEAD
	mac  []byte // the key of the addresses' digests, derived from the sealing key
	aad  []byte
	// digests remembers the digest of each link a catalog's templates give (a handful), so
	// that a search parses no URL and hashes nothing; a template with a per-search part in
	// its path would give a new link every search, so it remembers at most maxRemembered.
	digests    sync.Map // link → [digestSize]byte
	remembered atomic.Int32
}

const maxRemembered = 1024

// NewSealer seals with the key of keys whose id is kid.
func NewSealer(keys *KeySet, kid string) (*Sealer, error) {
	k, ok := keys.secret(kid)
	if !ok {
		return nil, fmt.Errorf("no link key %q to seal with in the key set", kid)
	}
	if len(kid) > MaxSigningKeyIDLength {
		return nil, fmt.Errorf("link key id %q is longer than %d characters", kid, MaxSigningKeyIDLength)
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("link key %q: %w", kid, err)
	}
	return &Sealer{kid: kid, aead: aead, mac: macKey(k), aad: additionalData(kid)}, nil
}

// Seal makes the reference of offer o with claims c, and puts its place (contracts.RefMarker)
// in o's proposal links: the record stores the reference once, however many links the offer
// has (contracts.Search.Refs).
func (s *Sealer) Seal(o *contracts.Offer, c Claims) (string, error) {
	var digests [maxAddresses][digestSize]byte
	n := 0
	for _, l := range []*string{&o.ProposalLink.Link, &o.ProposalLink.Deep} {
		if *l == "" {
			continue
		}
		d, err := s.digest(*l)
		if err != nil {
			return "", err
		}
		digests[n] = d
		n++
		*l = placeholder(*l)
	}
	ref, err := s.seal(c, digests[:n])
	if err != nil {
		return "", err
	}
	return ref, nil
}

func (s *Sealer) digest(link string) ([digestSize]byte, error) {
	if d, ok := s.digests.Load(link); ok {
		return d.([digestSize]byte), nil
	}
	u, err := url.Parse(link)
	if err != nil || u.Scheme == "" {
		return [digestSize]byte{}, fmt.Errorf("proposal link %q is not an absolute URL", link)
	}
	d := digest(s.mac, address(u))
	if s.remembered.Load() < maxRemembered && s.remembered.Add(1) <= maxRemembered {
		s.digests.Store(link, d)
	}
	return d, nil
}

func (s *Sealer) seal(c Claims, digests [][digestSize]byte) (string, error) {
	var buf [256]byte
	plain, err := encodeClaims(buf[:0], c, digests)
	if err != nil {
		return "", err
	}
	sealed := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(sealed) // never fails (crypto/rand)
	sealed = s.aead.Seal(sealed, sealed, plain, s.aad)
	out := make([]byte, 0, len(s.kid)+len(refSep)+enc.EncodedLen(len(sealed)))
	out = append(out, s.kid...)
	out = append(out, refSep...)
	return string(enc.AppendEncode(out, sealed)), nil
}

// open opens a reference; addr is its link's address, "" for a bare reference.
func (v *Verifier) open(ref, addr string) (Claims, error) {
	kid, payload, _ := strings.Cut(ref, refSep)
	if !kidPattern.MatchString(kid) {
		return Claims{}, fmt.Errorf("%w: no key id", ErrMalformed)
	}
	k, ok := v.keys.secret(kid)
	if !ok {
		return Claims{}, fmt.Errorf("%w (%q)", ErrUnknownKey, kid)
	}
	sealed, err := enc.DecodeString(payload)
	if err != nil || len(sealed) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return Claims{}, fmt.Errorf("%w: not base64url, or too short", ErrMalformed)
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: key %q: %v", ErrMalformed, kid, err)
	}
	nonce, box := sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:]
	plain, err := aead.Open(nil, nonce, box, additionalData(kid))
	if err != nil {
		return Claims{}, ErrForged
	}
	c, digests, err := decodeClaims(plain)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrClaims, err)
	}
	if addr != "" {
		want := digest(macKey(k), addr)
		found := false
		for _, d := range digests {
			found = found || hmac.Equal(d[:], want[:])
		}
		if !found {
			return c, fmt.Errorf("%w (%s)", ErrAddress, addr)
		}
	}
	return c, nil
}

func additionalData(kid string) []byte {
	return append([]byte{refVersion}, kid...)
}

// macKey derives the key of the addresses' digests from a sealing key, so that one key is
// never used for two things.
func macKey(k []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte("yacredits offerlink address digest v1"))
	return m.Sum(nil)
}

func digest(key []byte, addr string) (d [digestSize]byte) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(addr))
	copy(d[:], m.Sum(nil))
	return d
}

// The sealed claims are a few dozen bytes of binary, not JSON: every byte is a third more in
// the link, and every link is in each answer. Layout (refVersion 1):
//
//	flags            1 byte: loan, full_approved, search id with upper-case digits
//	iat              uvarint, seconds since 1970
//	exp-iat          uvarint, seconds
//	search id        16 bytes (a UUID), then 4 bytes of upper-case flags if so flagged
//	offer            1 byte length, the product id
//	amount min, max  uvarint kopecks
//	term min, max    uvarint months, loans only
//	rate min, max    uvarint thousandths of a percent
//	addresses        1 byte count, 8 bytes each
const (
	flagLoan = 1 << iota
	flagFull
	flagCase
)

// parseUUID reads a UUID's 16 bytes and which of its 32 hex digits are upper case.
func parseUUID(s string) (id [16]byte, upper uint32, ok bool) {
	if len(s) != 36 {
		return id, 0, false
	}
	i := 0 // the hex digit
	for j := 0; j < len(s); j++ {
		ch := s[j]
		if j == 8 || j == 13 || j == 18 || j == 23 {
			if ch != '-' {
				return id, 0, false
			}
			continue
		}
		var v byte
		switch {
		case ch >= '0' && ch <= '9':
			v = ch - '0'
		case ch >= 'a' && ch <= 'f':
			v = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			v, upper = ch-'A'+10, upper|1<<i
		default:
			return id, 0, false
		}
		id[i/2] |= v << (4 * (1 - i%2))
		i++
	}
	return id, upper, true
}

// Upper bounds of the figures a reference holds (the catalog's own limits are lower).
const (
	maxTerm  = 1<<14 - 1 // months: a uvarint of 2 bytes
	maxRate  = 1<<21 - 1 // thousandths of a percent (2,097 %): 3 bytes
	maxIAT   = 1<<35 - 1 // seconds since 1970, to the year 3058: 5 bytes
	maxValid = 1<<28 - 1 // seconds from iat to exp, 8 years: 4 bytes
)

func encodeClaims(b []byte, c Claims, digests [][digestSize]byte) ([]byte, error) {
	id, upper, ok := parseUUID(c.SearchID)
	switch {
	case !ok:
		return nil, fmt.Errorf("link claims: search id %q is not a UUID", c.SearchID)
	case c.Offer == "" || len(c.Offer) > 64: // a product id, as the catalog checked it
		return nil, fmt.Errorf("link claims: offer %q is not a product id", c.Offer)
	case c.Expiry <= c.IssuedAt || c.IssuedAt <= 0 || c.IssuedAt > maxIAT || c.Expiry-c.IssuedAt > maxValid:
		return nil, errors.New("link claims: iat and exp")
	case c.Amount.Min < 0 || c.Amount.Max < c.Amount.Min || c.Amount.Max > money.Amount(maxAmount):
		return nil, fmt.Errorf("link claims: amount %s–%s", c.Amount.Min, c.Amount.Max)
	case c.Rate.Min < 0 || c.Rate.Max < c.Rate.Min || c.Rate.Max > maxRate:
		return nil, fmt.Errorf("link claims: rate %s–%s", c.Rate.Min, c.Rate.Max)
	case (c.ProductType == contracts.ProductLoan) != (c.Term != nil) || !c.ProductType.Valid() || !c.Decision.Valid():
		return nil, errors.New("link claims: product type, decision or term")
	case c.Term != nil && (c.Term.Min < 1 || c.Term.Max < c.Term.Min || c.Term.Max > maxTerm):
		return nil, fmt.Errorf("link claims: term %d–%d", c.Term.Min, c.Term.Max)
	case len(digests) == 0 || len(digests) > maxAddresses:
		return nil, errors.New("link claims: one or two addresses")
	}
	var flags byte
	if c.ProductType == contracts.ProductLoan {
		flags |= flagLoan
	}
	if c.Decision == contracts.FullApproved {
		flags |= flagFull
	}
	if upper != 0 {
		flags |= flagCase
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(c.IssuedAt))
	b = binary.AppendUvarint(b, uint64(c.Expiry-c.IssuedAt))
	b = append(b, id[:]...)
	if upper != 0 {
		b = binary.LittleEndian.AppendUint32(b, upper)
	}
	b = append(b, byte(len(c.Offer)))
	b = append(b, c.Offer...)
	b = binary.AppendUvarint(b, uint64(c.Amount.Min))
	b = binary.AppendUvarint(b, uint64(c.Amount.Max))
	if c.Term != nil {
		b = binary.AppendUvarint(b, uint64(c.Term.Min))
		b = binary.AppendUvarint(b, uint64(c.Term.Max))
	}
	b = binary.AppendUvarint(b, uint64(c.Rate.Min))
	b = binary.AppendUvarint(b, uint64(c.Rate.Max))
	b = append(b, byte(len(digests)))
	for _, d := range digests {
		b = append(b, d[:]...)
	}
	return b, nil
}

// maxAmount is the catalog's limit (100,000,000 roubles) with room: uvarint's 5 bytes.
const maxAmount = 1<<35 - 1

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.fail()
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("the sealed claims are cut short or out of range")
	}
}

func decodeClaims(b []byte) (Claims, [][digestSize]byte, error) {
	r := reader{b: b}
	var c Claims
	flags := r.bytes(1)[0]
	c.IssuedAt = int64(r.uvarint(maxIAT))
	c.Expiry = c.IssuedAt + int64(r.uvarint(maxValid))
	id := r.bytes(16)
	var upper uint32
	if flags&flagCase != 0 {
		upper = binary.LittleEndian.Uint32(r.bytes(4))
	}
	const digits = "0123456789abcdef"
	var s strings.Builder
	for i := range 32 {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			s.WriteByte('-')
		}
		ch := digits[id[i/2]>>(4*(1-i%2))&0xf]
		if upper&(1<<i) != 0 && ch >= 'a' {
			ch -= 'a' - 'A'
		}
		s.WriteByte(ch)
	}
	c.SearchID = s.String()
	c.Offer = string(r.bytes(int(r.bytes(1)[0])))
	c.ProductType, c.Decision = contracts.ProductCreditCard, contracts.PreApproved
	if flags&flagLoan != 0 {
		c.ProductType = contracts.ProductLoan
	}
	if flags&flagFull != 0 {
		c.Decision = contracts.FullApproved
	}
	c.Amount.Min = money.Amount(r.uvarint(maxAmount))
	c.Amount.Max = money.Amount(r.uvarint(maxAmount))
	if flags&flagLoan != 0 {
		c.Term = &contracts.TermRange{Min: int(r.uvarint(maxTerm)), Max: int(r.uvarint(maxTerm))}
	}
	c.Rate.Min = money.Rate(r.uvarint(maxRate))
	c.Rate.Max = money.Rate(r.uvarint(maxRate))
	n := int(r.bytes(1)[0])
	if n > maxAddresses {
		r.fail()
	}
	digests := make([][digestSize]byte, 0, maxAddresses)
	for range min(n, maxAddresses) {
		digests = append(digests, [digestSize]byte(r.bytes(digestSize)))
	}
	switch {
	case r.err != nil:
		return c, nil, r.err
	case len(r.b) != 0 || flags&^(flagLoan|flagFull|flagCase) != 0:
		return c, nil, errors.New("the sealed claims have more than their layout")
	case !contracts.ValidOfferID(c.Offer), c.Expiry <= c.IssuedAt, c.Amount.Min > c.Amount.Max, c.Rate.Min > c.Rate.Max,
		c.Term != nil && c.Term.Min > c.Term.Max:
		return c, nil, errors.New("the sealed claims are not an offer's")
	}
	return c, digests, nil
}

// MaxRefLength bounds the length of the reference of any offer of product productID: the
// longest signing key id, and the largest figures the layout holds.
func MaxRefLength(productID string) int {
	// flags, iat, exp-iat, search id and its case, offer, amounts, terms, rates, addresses.
	plain := 1 + 5 + 4 + 16 + 4 + 1 + len(productID) + 2*5 + 2*2 + 2*3 + 1 + maxAddresses*digestSize
	sealed := chacha20poly1305.NonceSizeX + plain + chacha20poly1305.Overhead
	return MaxSigningKeyIDLength + len(refSep) + enc.EncodedLen(sealed)
}
