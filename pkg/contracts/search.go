package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/klauspost/compress/s2"

	"github.com/demobank/yacredits/pkg/money"
)

// Status is where a search stands. It only ever moves from Pending to Done.
type Status string

const (
	Pending Status = "pending"
	Done    Status = "done"
)

// Reasons a search was finished without offers; recorded for people, never sent to Yandex.
const (
	ReasonDeadline   = "deadline_exceeded"
	ReasonDeadLetter = "dead_letter"
	ReasonNoOffers   = "no_matching_offer"
	// ReasonPreapprovalLapsed: the pre-approval lapsed between scoring and pricing, so no
	// link could be given a validity.
	ReasonPreapprovalLapsed = "preapproval_lapsed"
)

// SearchSchema is the version of the record encoding written today. Version 1 records are
// still read: records live SEARCH_RETENTION across deploys (testdata/search.v1.*.json).
const SearchSchema = 2

// SearchSchemaRefs is version 2 with the offers' link references stored apart (Refs): what
// a done search with offers is written as. It has its own number so that a reader that
// predates it refuses the record instead of sending Yandex links with RefMarker in them.
const SearchSchemaRefs = 3

// RefMarker stands, in a stored offer's proposal links, where the offer's reference goes
// (Search.Refs). A link is an RFC 3986 URI (the catalog checks it), which holds no control
// character, so the marker's JSON form, \u0000, occurs nowhere else in an encoded offer.
const RefMarker = "\x00"

// refMarkerJSON is RefMarker as EncodeOffers writes it.
const refMarkerJSON = `\u0000`

// ErrAlreadyDone is returned for a finish of a search that is already done: state only
// moves forward, so the first finish wins and every later one is a no-op for its caller.
var ErrAlreadyDone = errors.New("search already done")

// Search is the record kept in the searches bucket under the lowercase search_id: what a
// poll reads and a retry is compared with. It stores nothing twice and nothing that can be
// derived: the id is the key, the status follows from DoneAt, the decision from Offers.
type Search struct {
	Request LoanRequested // its SearchID is the record's key
	// Offers is the answer's data array exactly as it is sent (best first), encoded once by
	// the offers service and never decoded on the way out; nil when there are none.
	Offers json.RawMessage
	// Refs are the references of the offers' proposal links, one per offer in Offers' order:
	// an offer with a web and a deep link carries one reference, stored once here, and its
	// links hold RefMarker in its place. Nil when the links carry their own (records written
	// before SearchSchemaRefs) or there are no offers. Data puts them in.
	Refs    []string
	Reasons []string   // why, in machine codes
	DoneAt  *time.Time // set once the search is done
	// Trace is the W3C traceparent of the request that started the search, so that work done
	// for it later (a re-send, the deadline, a poll's link) joins the same trace.
	Trace string
	// Basis is what produced the decision of a search the offers service finished (nil for
	// one finished at its deadline or dead-lettered): enough to explain it and to price it
	// again.
	Basis *Basis
}

// PricingVersion names the pricing rules (services/offers/pricing) a decision was priced
// with. A change to them that can move any figure bumps it, so that a replay with other
// rules says so instead of reporting a difference as a regression.
const PricingVersion = "2026-12-ceilings"

// Basis is what a finished search's decision was made from: scoring's basis, when it scored,
// and the revisions the offers service priced with.
type Basis struct {
	ScoreBasis `json:",inline"`
	ScoredAt   time.Time `json:"scored_at"`
	// The decision's verdict, kind, grade and ranges as scoring made them.
	Verdict    Verdict       `json:"verdict"`
	Kind       OfferDecision `json:"kind,omitempty"`
	Grade      string        `json:"grade,omitempty"`
	Amount     *AmountRange  `json:"amount,omitempty"`
	Term       *TermRange    `json:"term,omitempty"`
	ValidUntil *time.Time    `json:"valid_until,omitempty"`

	Catalog  uint64   `json:"catalog"`            // the catalog bucket's revision
	Ceilings uint64   `json:"ceilings"`           // the ceiling table bucket's revision
	Quarters []string `json:"quarters,omitempty"` // the table's quarters that applied
	Pricing  string   `json:"pricing"`            // PricingVersion
	// MaxOffers is the cap on the offers of one answer (OFFERS_MAX) it was priced under.
	MaxOffers int       `json:"max_offers"`
	PricedAt  time.Time `json:"priced_at"`
	// LinksUntil is when the offers' links expire: the end of the window the ceilings of
	// every quarter in it applied to.
	LinksUntil time.Time `json:"links_until"`
	// Trail is what became of every product of the asked type (pricing's outcome codes).
	Trail map[string]string `json:"trail,omitempty"`
	// Offered are the product ids of the offers, in the answer's order: which product each
	// offer is, which its links' sealed references keep from anyone without the key.
	Offered []string `json:"offered,omitempty"`
}

// ScoredFrom is the Scored message a basis records, for a replay.
func (b *Basis) ScoredFrom(req LoanRequested) Scored {
	return Scored{Request: req, Verdict: b.Verdict, Kind: b.Kind, Amount: b.Amount, Term: b.Term, Grade: b.Grade,
		ScoredAt: b.ScoredAt, ValidUntil: b.ValidUntil}
}

// NewSearch is the pending record of an accepted request.
func NewSearch(req LoanRequested, traceparent string) *Search {
	return &Search{Request: req, Trace: traceparent}
}

// Status is pending until the search is done.
func (s Search) Status() Status {
	if s.DoneAt != nil {
		return Done
	}
	return Pending
}

// Decision is the search-level answer of a done search.
func (s Search) Decision() Decision {
	if len(s.Offers) > 0 {
		return HasApprove
	}
	return Rejected
}

// Finish returns a copy of s done with offers (an encoded data array, EncodeOffers, whose
// links carry their own references; none means rejected) and reasons. It refuses a search
// that is already done.
func (s Search) Finish(offers json.RawMessage, reasons []string, now time.Time) (*Search, error) {
	if s.DoneAt != nil {
		return nil, ErrAlreadyDone
	}
	if len(offers) == 0 || string(offers) == "[]" || string(offers) == "null" {
		offers = nil
	}
	s.Offers, s.Refs, s.Reasons = offers, nil, reasons
	t := now.UTC()
	s.DoneAt = &t
	return &s, nil
}

// Allowance is the longest after its deadline that a search may still end with offers (spec
// §5): the chance a fault on our side took from it, at the latest this long after. Whether a
// fault held it up is the gateway's sweeper's judgement (it finishes a search that met none
// at its deadline); that no offers come later than this is the record's rule (FinishOffered).
const Allowance = time.Minute

// FinishOffered is Finish for the offers service's decision at now, made from basis: with it
// until Allowance after the deadline; past that the search ends rejected at now for its
// deadline (ReasonDeadline), without a basis (no decision made that answer), as the sweeper
// would have ended it had it got there first. A search already done keeps its ending
// (ErrAlreadyDone). refs are the references of the offers' links (Search.Refs): nil, or one
// per offer.
func (s Search) FinishOffered(offers json.RawMessage, refs, reasons []string, basis *Basis, now time.Time) (*Search, error) {
	if s.DoneAt == nil && now.After(s.Request.Deadline.Add(Allowance)) {
		return s.Finish(nil, []string{ReasonDeadline}, now)
	}
	next, err := s.Finish(offers, reasons, now)
	if err != nil {
		return nil, err
	}
	if err := next.SetRefs(refs); err != nil {
		return nil, err
	}
	next.Basis = basis
	return next, nil
}

// SetRefs gives a done search's offers their links' references, one per offer (none for a
// rejection).
func (s *Search) SetRefs(refs []string) error {
	if s.Offers == nil {
		refs = nil
	}
	if err := checkRefs(s.Offers, refs); err != nil {
		return err
	}
	s.Refs = refs
	return nil
}

// Overdue reports whether s is still pending past its deadline.
func (s Search) Overdue(now time.Time) bool {
	return s.DoneAt == nil && now.After(s.Request.Deadline)
}

// Data is the answer's data array: Offers with each offer's reference in its links. A record
// without Refs is sent as it is stored.
func (s Search) Data() json.RawMessage {
	if len(s.Refs) == 0 {
		return s.Offers
	}
	return spliceRefs(s.Offers, s.Refs)
}

// linkMember opens an offer's proposal links, the last member of an encoded Offer. Outside
// a string a quote is never escaped, so this occurs once per offer and in no string; the
// links object it opens ends at the first '}' (an RFC 3986 URI has none), and only there is
// a marker looked for, so that no other text of an offer can be taken for one.
const linkMember = `"propousal_link":{`

// spliceRefs writes offers with the RefMarker in the links of offer i replaced by refs[i].
// checkRefs has made sure of the counts when the record was made or read.
func spliceRefs(offers []byte, refs []string) []byte {
	n := len(offers)
	for _, r := range refs {
		n += 2 * len(r) // at most two links an offer
	}
	out := make([]byte, 0, n)
	rest := offers
	for _, ref := range refs {
		links, end := linksOf(rest)
		if links < 0 {
			break
		}
		out = append(out, rest[:links]...)
		out = append(out, bytes.ReplaceAll(rest[links:end], []byte(refMarkerJSON), []byte(ref))...)
		rest = rest[end:]
	}
	return append(out, rest...)
}

// linksOf finds the next offer's links object in b: from its member's name to its end.
func linksOf(b []byte) (start, end int) {
	start = bytes.Index(b, []byte(linkMember))
	if start < 0 {
		return -1, -1
	}
	end = bytes.IndexByte(b[start:], '}')
	if end < 0 {
		return -1, -1
	}
	return start, start + end
}

// checkRefs refuses refs that are not one per offer, each for an offer whose links hold its
// marker, or a marker with no refs (it would reach Yandex as it is); and a reference with a
// character that is not its own (a quote would break the answer's JSON).
func checkRefs(offers []byte, refs []string) error {
	for _, r := range refs {
		if r == "" || !inRefAlphabet(r) {
			return fmt.Errorf("%w: a link reference %q is not one", ErrInvalid, r)
		}
	}
	rest, n := offers, 0
	for {
		start, end := linksOf(rest)
		if start < 0 {
			break
		}
		if bytes.Contains(rest[start:end], []byte(refMarkerJSON)) != (len(refs) > 0) {
			return fmt.Errorf("%w: offer %d's links and the %d link references disagree", ErrInvalid, n, len(refs))
		}
		rest, n = rest[end:], n+1
	}
	if len(refs) > 0 && n != len(refs) {
		return fmt.Errorf("%w: %d link references for %d offers", ErrInvalid, len(refs), n)
	}
	return nil
}

// refAlphabet is every character a link reference may hold: a key id's and base64url's, and
// the '~' between them; none needs escaping in JSON or a URL.
const refAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-~"

// refByte marks refAlphabet's bytes: every record read checks each reference's characters,
// and a search through the alphabet for each cost 17 µs a search (CPU profile of
// BenchmarkSearch, 7 December 2026).
var refByte = func() (t [256]bool) {
	for i := 0; i < len(refAlphabet); i++ {
		t[refAlphabet[i]] = true
	}
	return t
}()

func inRefAlphabet(r string) bool {
	for i := 0; i < len(r); i++ {
		if !refByte[r[i]] {
			return false
		}
	}
	return true
}

// EncodeOffers encodes offers as the answer's data array, once: the record stores these
// bytes and the gateway sends them as they are. HTML is not escaped, so that a proposal
// link's '&' reads as '&'. No offers encode as nil.
func EncodeOffers(offers []Offer) (json.RawMessage, error) {
	if len(offers) == 0 {
		return nil, nil
	}
	return jsonv2.Marshal(offers)
}

// DecodeOffers reads offers encoded by EncodeOffers, for people and audits; the answer path
// never needs to.
func DecodeOffers(raw json.RawMessage) ([]Offer, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var offers []Offer
	if err := jsonv2.Unmarshal(raw, &offers); err != nil {
		return nil, fmt.Errorf("%w: decode offers: %v", ErrInvalid, err)
	}
	return offers, nil
}

// searchWire is the record's encoding. Version 2 omits what version 1 stored twice or could
// derive (search_id, status, decision, a done search's deadline) and keeps the trace as the
// traceparent alone; the version 1 fields are read and never written. The basis is apart
// (searchBasisWire), so that a reader that answers from the record never decodes it.
type searchWire struct {
	Schema  int            `json:"schema"`
	Request LoanRequested  `json:"request"`
	DoneAt  *time.Time     `json:"done_at,omitempty"`
	Offers  jsontext.Value `json:"offers,omitempty"`
	Refs    []string       `json:"refs,omitempty"` // v3
	Reasons []string       `json:"reasons,omitempty"`
	Trace   jsontext.Value `json:"trace,omitempty"` // v2, v3: "traceparent"; v1: {"traceparent": …}

	V1Props  []string `json:"props,omitempty"`
	V1Status Status   `json:"status,omitempty"`
}

// searchBasisWire is the whole record, its basis included.
type searchBasisWire struct {
	searchWire `json:",inline"`
	Basis      *Basis `json:"basis,omitempty"`
}

// recordWire is what version 2 writes.
type recordWire struct {
	Schema  int            `json:"schema"`
	Request requestWire    `json:"request"`
	DoneAt  *time.Time     `json:"done_at,omitempty"`
	Offers  jsontext.Value `json:"offers,omitempty"`
	Refs    []string       `json:"refs,omitempty"`
	Reasons []string       `json:"reasons,omitempty"`
	Trace   string         `json:"trace,omitempty"`
	Basis   *Basis         `json:"basis,omitempty"`
}

// requestWire is a request as a record keeps it: without the id (the record's key), and
// without the deadline once the search is done.
type requestWire struct {
	Spelling    string        `json:"search_id_as_sent,omitempty"`
	PhoneHash   string        `json:"phone_hash"`
	PhoneKey    string        `json:"phone_key,omitempty"`
	PhoneMasked string        `json:"phone_masked"`
	ProductType ProductType   `json:"product_type"`
	Amount      *money.Amount `json:"amount,omitempty"`
	Term        *int          `json:"term,omitempty"`
	Props       []string      `json:"props,omitempty"`
	RequestedAt time.Time     `json:"requested_at"`
	Deadline    *time.Time    `json:"deadline,omitempty"`
	Test        bool          `json:"test,omitzero"`
}

// EncodeSearch writes the record for the bucket.
func EncodeSearch(s *Search) ([]byte, error) {
	r := s.Request
	w := recordWire{Schema: SearchSchema, Request: requestWire{Spelling: r.Spelling, PhoneHash: r.PhoneHash, PhoneKey: r.PhoneKey, PhoneMasked: r.PhoneMasked,
		ProductType: r.ProductType, Amount: r.Amount, Term: r.Term, Props: r.Props, RequestedAt: r.RequestedAt, Test: r.Test},
		DoneAt: s.DoneAt, Offers: jsontext.Value(s.Offers), Refs: s.Refs, Reasons: s.Reasons, Trace: s.Trace, Basis: s.Basis}
	if len(s.Refs) > 0 {
		w.Schema = SearchSchemaRefs
	}
	if s.DoneAt == nil {
		d := r.Deadline
		w.Request.Deadline = &d // only a pending search needs its deadline
	}
	// Deterministic: the basis's trail is a map, and a record must encode the same way every
	// time (golden files, and a record written again byte for byte).
	return jsonv2.Marshal(&w, jsonv2.Deterministic(true))
}

// DecodeSearch reads the record stored under key (the lowercase search_id), in either
// version.
func DecodeSearch(key string, data []byte) (*Search, error) {
	var w searchBasisWire
	if err := jsonv2.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: decode search %s: %v", ErrInvalid, key, err)
	}
	s, err := w.searchWire.search(key)
	if err != nil {
		return nil, err
	}
	s.Basis = w.Basis
	return s, nil
}

// DecodeSearchAnswer reads the record stored under key as DecodeSearch does, less its basis
// (nil): all that an answer, a retry's comparison and the sweeper need, without the
// decision's basis (the larger part of a done record), which only explain and the audit
// trail read.
func DecodeSearchAnswer(key string, data []byte) (*Search, error) {
	var w searchWire // "basis" is not one of its members: skipped, never decoded
	if err := jsonv2.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: decode search %s: %v", ErrInvalid, key, err)
	}
	return w.search(key)
}

func (w *searchWire) search(key string) (*Search, error) {
	s := &Search{Request: w.Request, DoneAt: w.DoneAt, Offers: json.RawMessage(w.Offers), Refs: w.Refs, Reasons: w.Reasons}
	s.Request.SearchID = key
	if len(s.Offers) == 0 || string(s.Offers) == "null" || string(s.Offers) == "[]" {
		s.Offers = nil
	}
	if (w.Schema == SearchSchemaRefs) != (len(s.Refs) > 0) {
		return nil, fmt.Errorf("%w: search %s: schema %d with %d link references", ErrInvalid, key, w.Schema, len(s.Refs))
	}
	if err := checkRefs(s.Offers, s.Refs); err != nil {
		return nil, fmt.Errorf("search %s: %w", key, err)
	}
	switch w.Schema {
	case 1:
		s.Request.Props = w.V1Props
		var m map[string]string
		if len(w.Trace) > 0 && jsonv2.Unmarshal(w.Trace, &m) == nil {
			s.Trace = m["traceparent"]
		}
		if (w.V1Status == Done) != (w.DoneAt != nil) {
			return nil, fmt.Errorf("%w: search %s: status %q with done_at %v", ErrInvalid, key, w.V1Status, w.DoneAt)
		}
	case SearchSchema, SearchSchemaRefs:
		if len(w.Trace) > 0 {
			if err := jsonv2.Unmarshal(w.Trace, &s.Trace); err != nil {
				return nil, fmt.Errorf("%w: search %s: trace: %v", ErrInvalid, key, err)
			}
		}
	default:
		return nil, fmt.Errorf("%w: search %s: schema %d, want 1 to %d", ErrInvalid, key, w.Schema, SearchSchemaRefs)
	}
	if !s.Request.ProductType.Valid() || s.Request.RequestedAt.IsZero() {
		return nil, fmt.Errorf("%w: search %s: request without product or time", ErrInvalid, key)
	}
	if s.Request.Spelling != "" && strings.ToLower(s.Request.Spelling) != key {
		return nil, fmt.Errorf("%w: search %s: spelled as another id, %q", ErrInvalid, key, s.Request.Spelling)
	}
	if s.DoneAt == nil && s.Request.Deadline.IsZero() {
		return nil, fmt.Errorf("%w: search %s: pending without a deadline", ErrInvalid, key)
	}
	return s, nil
}

// peekers reuse their token decoders: PeekSearchDone runs for every write a gateway watches.
var peekers = sync.Pool{New: func() any {
	p := new(peeker)
	p.d = jsontext.NewDecoder(&p.r)
	return p
}}

type peeker struct {
	r bytes.Reader
	d *jsontext.Decoder
}

// PeekSearchDone reports whether the record data is of a done search, reading its top-level
// members only as far as the answer: in version 2 done_at follows the request, so a done
// record's offers and basis are never read; a pending one's are absent. A record DecodeSearch
// would refuse may still be peeked: PeekSearchDone is for telling, not for checking.
func PeekSearchDone(data []byte) (bool, error) {
	p := peekers.Get().(*peeker)
	defer peekers.Put(p)
	p.r.Reset(data)
	// The reader lets go of the record; the decoder's own buffer keeps a copy of the record's
	// first members (the hashed and masked phone among them) until its next use: memory of a
	// process that holds whole records anyway, and never written anywhere.
	defer p.r.Reset(nil)
	d := p.d
	d.Reset(&p.r)
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return false, fmt.Errorf("%w: search record is not a JSON object", ErrInvalid)
	}
	for {
		tok, err := d.ReadToken()
		if err != nil {
			return false, fmt.Errorf("%w: search record: %v", ErrInvalid, err)
		}
		if tok.Kind() == '}' {
			return false, nil
		}
		switch tok.String() {
		case "done_at": // either version: set once done
			v, err := d.ReadToken()
			if err != nil {
				return false, fmt.Errorf("%w: search record: %v", ErrInvalid, err)
			}
			return v.Kind() != 'n', nil
		default:
			if err := d.SkipValue(); err != nil {
				return false, fmt.Errorf("%w: search record: %v", ErrInvalid, err)
			}
		}
	}
}

// AuditBatch (audit.v1.decisions) is a batch of finished searches as the audit trail keeps
// them for a year: each record as the searches bucket held it, without what the trail must
// not keep (AuditRecord). A batch is one synced write for many searches.
type AuditBatch struct {
	// PseudonymKey names the key the records' phone_hash is a pseudonym under
	// (AUDIT_PSEUDONYM_KEY, offers' alone): the phone's hash under the phone-hash key,
	// HMAC-ed again. Empty in batches written before: those keep the phone hash itself.
	PseudonymKey string       `json:"pseudonym_key,omitempty"`
	Records      []AuditEntry `json:"records"`
}

// AuditEntry is one finished search in an AuditBatch.
type AuditEntry struct {
	SearchID string         `json:"search_id"`
	Record   jsontext.Value `json:"record"` // EncodeSearch of AuditRecord's result
}

// AuditRecord is the record as the audit trail keeps it: without the masked phone (its last
// four digits are personal data, and a keyed hash is all a support desk needs to find a
// client's searches), without Yandex's opaque props, which the decision never read, and
// without the phone-hash key's name: the trail's writer replaces the hash by its pseudonym.
func AuditRecord(s *Search) *Search {
	a := *s
	a.Request.PhoneMasked = ""
	a.Request.Props = nil
	a.Request.PhoneKey = "" // the trail's phone_hash is a pseudonym under its own key (AuditBatch)
	return &a
}

// An audit.v1.decisions message's payload is the batch's JSON compressed with S2 when its
// AuditEncodingHeader says AuditEncodingS2, and the JSON itself in batches written before
// (no header). A record compresses about five times, and the trail keeps a year of them:
// the bound it is held to, and the disk its writes share with the searches bucket's synced
// ones, count the compressed bytes. The stream's own compression would too, but rewrites
// every block it closes, reads that the bucket's syncs wait behind (docs/performance.md).
const (
	AuditEncodingHeader = "Content-Encoding"
	AuditEncodingS2     = "s2"
	// maxAuditBatch bounds what a compressed batch may claim to decode to: the writer's are
	// under the broker's 1 MiB max_payload before compression.
	maxAuditBatch = 16 << 20
)

// CompressAuditBatch is the payload of a batch whose JSON is batch, to be sent with
// AuditEncodingHeader set to AuditEncodingS2.
func CompressAuditBatch(batch []byte) []byte { return s2.Encode(nil, batch) }

// DecodeAuditMsg reads an audit.v1.decisions message from its payload and the value of its
// AuditEncodingHeader.
func DecodeAuditMsg(encoding string, data []byte) (*AuditBatch, error) {
	batch, err := AuditBatchJSON(encoding, data)
	if err != nil {
		return nil, err
	}
	return DecodeAuditBatch(batch)
}

// AuditBatchJSON is the JSON of an audit.v1.decisions message's batch: its payload,
// decompressed as the value of its AuditEncodingHeader says.
func AuditBatchJSON(encoding string, data []byte) ([]byte, error) {
	switch encoding {
	case "":
		return data, nil
	case AuditEncodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil || n > maxAuditBatch {
			return nil, fmt.Errorf("%w: decode %s: s2 payload of %d bytes: %v", ErrInvalid, SubjectAudit, n, err)
		}
		batch, err := s2.Decode(nil, data)
		if err != nil {
			return nil, fmt.Errorf("%w: decode %s: %v", ErrInvalid, SubjectAudit, err)
		}
		return batch, nil
	}
	return nil, fmt.Errorf("%w: decode %s: unknown encoding %q", ErrInvalid, SubjectAudit, encoding)
}

// DecodeAuditBatch reads an audit.v1.decisions batch's JSON.
func DecodeAuditBatch(data []byte) (*AuditBatch, error) {
	var b AuditBatch
	if err := jsonv2.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrInvalid, SubjectAudit, err)
	}
	return &b, nil
}
