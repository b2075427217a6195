package contracts

import (
	"errors"
	"fmt"
	"strings"
	"time"

	json "github.com/go-json-experiment/json"

	"github.com/demobank/yacredits/pkg/money"
)

// ErrInvalid wraps every error the constructors and decoders return, so that a consumer can
// tell a message that will never be processable (terminate it) from a passing failure.
var ErrInvalid = errors.New("invalid message")

// LoanRequested (loan.v1.requested) is a search as the gateway accepted it: validated,
// normalised, and with the phone replaced by its keyed hash and masked form. It carries
// nothing a consumer must not see; the raw phone never leaves the gateway.
type LoanRequested struct {
	SearchID string `json:"search_id"` // lowercase hyphenated UUID: the record's key
	// Spelling is the search_id as Yandex sent it, when that was not all lowercase (empty:
	// as SearchID): what every link and every conversion carries back to Yandex, which may
	// compare it byte for byte (spec §9). AsSent gives it either way.
	Spelling  string `json:"search_id_as_sent,omitempty"`
	PhoneHash string `json:"phone_hash"` // hex HMAC-SHA256 of the canonical phone
	// PhoneKey names the key PhoneHash is made with (phone.Hasher.ID). Empty in what was made
	// before keys were named, all of it under the one key of the time.
	PhoneKey string `json:"phone_key,omitempty"`
	// EarlierHashes are the phone's hashes under the earlier keys the gateway still holds
	// during a rotation, by key id: scoring finds the pre-approval in a snapshot made with
	// either key, whichever came first. The message's only; a record keeps PhoneHash.
	EarlierHashes map[string]string `json:"earlier_hashes,omitempty"`
	PhoneMasked   string            `json:"phone_masked"` // +7******5040, for people
	ProductType   ProductType       `json:"product_type"`
	Amount        *money.Amount     `json:"amount,omitempty"` // the wish, not a filter
	Term          *int              `json:"term,omitempty"`   // months
	// Props are Yandex's opaque service data, kept with the search and never interpreted.
	// They travel with the request so that whichever service writes the record keeps them.
	Props       []string  `json:"props,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	Deadline    time.Time `json:"deadline"` // past it the search is finished as rejected
	// Test marks a search of a test phone (TEST_PHONES): decided from that file, and kept
	// out of the business figures in logs, traces and metrics.
	Test bool `json:"test,omitzero"`
}

// The shapes every request is checked for, written out rather than as regular expressions:
// a request is validated by each service it passes, and the regexp engine cost 15 µs a
// search of the standalone's CPU profile (BenchmarkSearch, 7 December 2026).
var (
	searchIDPattern  = pattern(isSearchID) // a lowercase hyphenated UUID
	phoneHashPattern = pattern(hexOf(64))  // a hex HMAC-SHA256
	phoneKeyPattern  = pattern(hexOf(16))  // a key id
)

// pattern is a shape with regexp's MatchString.
type pattern func(string) bool

func (p pattern) MatchString(s string) bool { return p(s) }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func hexOf(n int) func(string) bool {
	return func(s string) bool { return len(s) == n && isLowerHex(s) }
}

// isSearchID: 8-4-4-4-12 lowercase hex digits.
func isSearchID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isLowerHex(s[:8]) && isLowerHex(s[9:13]) && isLowerHex(s[14:18]) && isLowerHex(s[19:23]) && isLowerHex(s[24:])
}

// MaxEarlierHashes is the most earlier keys a request carries hashes under (phone.MaxOldKeys).
const MaxEarlierHashes = 2

// NewLoanRequested builds the message, checking what every consumer relies on.
func NewLoanRequested(r LoanRequested) (*LoanRequested, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeLoanRequested reads a loan.v1.requested payload.
func DecodeLoanRequested(data []byte) (*LoanRequested, error) {
	var r LoanRequested
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrInvalid, SubjectRequested, err)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r LoanRequested) validate() error {
	var problems []string
	if !searchIDPattern.MatchString(r.SearchID) {
		problems = append(problems, "search_id is not a lowercase UUID")
	}
	if r.Spelling != "" && strings.ToLower(r.Spelling) != r.SearchID {
		problems = append(problems, "search_id_as_sent is not the search_id as spelled")
	}
	if !phoneHashPattern.MatchString(r.PhoneHash) {
		problems = append(problems, "phone_hash is not a hex HMAC-SHA256")
	}
	if r.PhoneKey != "" && !phoneKeyPattern.MatchString(r.PhoneKey) {
		problems = append(problems, "phone_key is not a key id (16 hex digits)")
	}
	if len(r.EarlierHashes) > MaxEarlierHashes || len(r.EarlierHashes) > 0 && r.PhoneKey == "" {
		problems = append(problems, "earlier_hashes: too many, or without phone_key")
	}
	for id, h := range r.EarlierHashes {
		if !phoneKeyPattern.MatchString(id) || !phoneHashPattern.MatchString(h) || id == r.PhoneKey {
			problems = append(problems, "earlier_hashes: not a key id and a hex HMAC-SHA256 each")
			break
		}
	}
	if r.PhoneMasked == "" {
		problems = append(problems, "phone_masked is empty")
	}
	if !r.ProductType.Valid() {
		problems = append(problems, fmt.Sprintf("product_type %q is unknown", r.ProductType))
	}
	if r.Amount != nil && *r.Amount <= 0 {
		problems = append(problems, "amount is not positive")
	}
	if r.Term != nil && *r.Term < 1 {
		problems = append(problems, "term is not positive")
	}
	if r.RequestedAt.IsZero() || r.Deadline.Before(r.RequestedAt) {
		problems = append(problems, "deadline is missing or before requested_at")
	}
	return joinProblems(SubjectRequested, problems)
}

// AsSent is the search_id as Yandex spelled it.
func (r LoanRequested) AsSent() string {
	if r.Spelling != "" {
		return r.Spelling
	}
	return r.SearchID
}

// HashUnder is the phone's hash under the key named id, if the request carries it. A request
// that names no key was made under the one key of its time: its hash is taken for any.
func (r LoanRequested) HashUnder(id string) (string, bool) {
	if r.PhoneKey == "" || r.PhoneKey == id {
		return r.PhoneHash, true
	}
	h, ok := r.EarlierHashes[id]
	return h, ok
}

// SameAs reports whether o asks for the same thing as r: the spec's test for a retry (same
// search, phone, product, amount and term; props, timestamps and how the id was spelled are
// not compared).
func (r LoanRequested) SameAs(o LoanRequested) bool {
	return r.SearchID == o.SearchID && r.PhoneHash == o.PhoneHash && r.ProductType == o.ProductType &&
		equalPtr(r.Amount, o.Amount) && equalPtr(r.Term, o.Term)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Verdict is scoring's answer for the product asked.
type Verdict string

const (
	Approved Verdict = "approved"
	Declined Verdict = "declined"
)

// Scored (loan.v1.scored) is the credit decision for one search. Reasons are
// machine-readable codes for logs and traces (for example "no_preapproval",
// "amount_over_limit"); they never reach Yandex.
type Scored struct {
	Request  LoanRequested `json:"request"`
	Verdict  Verdict       `json:"verdict"`
	Kind     OfferDecision `json:"kind,omitempty"`   // how firm the approval is
	Amount   *AmountRange  `json:"amount,omitempty"` // the approved amount range
	Term     *TermRange    `json:"term,omitempty"`   // the approved term range, when the policy bounds it
	Grade    string        `json:"grade,omitempty"`  // the risk grade pricing uses
	Reasons  []string      `json:"reasons,omitempty"`
	ScoredAt time.Time     `json:"scored_at"`
	// ValidUntil is when the client's pre-approval lapses, for an approval made from one
	// (nil for one made by a policy fallback): no proposal link outlives it.
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	// Basis is what the decision was made from, for its trail and its replay.
	Basis *ScoreBasis `json:"basis,omitempty"`
}

// ScoreBasis is what scoring decided from: the pre-approval snapshot and the row of it used
// (never the phone), and the revision of the credit policy.
type ScoreBasis struct {
	// Snapshot is the pre-approval snapshot's content id, or SnapshotTestPhones for a test
	// phone, decided from TEST_PHONES.
	Snapshot string          `json:"snapshot,omitempty"`
	Row      *PreapprovalRow `json:"row,omitempty"` // nil: the client had no pre-approval for the product
	Policy   uint64          `json:"policy"`        // the policy bucket's revision
}

// SnapshotTestPhones is the snapshot of a test phone's decision.
const SnapshotTestPhones = "test_phones"

// PreapprovalRow is the row of a pre-approval snapshot a decision used, without the phone.
type PreapprovalRow struct {
	Kind       OfferDecision `json:"kind"`
	Limit      money.Amount  `json:"limit"`
	Grade      string        `json:"grade"`
	ValidUntil time.Time     `json:"valid_until"`
}

// NewScored builds the message, checking what the offers service relies on.
func NewScored(s Scored) (*Scored, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// DecodeScored reads a loan.v1.scored payload.
func DecodeScored(data []byte) (*Scored, error) {
	var s Scored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrInvalid, SubjectScored, err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s Scored) validate() error {
	if err := s.Request.validate(); err != nil {
		return err
	}
	var problems []string
	switch s.Verdict {
	case Approved:
		if !s.Kind.Valid() {
			problems = append(problems, fmt.Sprintf("kind %q is unknown", s.Kind))
		}
		if s.Amount == nil || s.Amount.Min <= 0 || s.Amount.Min > s.Amount.Max {
			problems = append(problems, "an approval needs a positive amount range")
		}
		if s.Grade == "" {
			problems = append(problems, "an approval needs a grade")
		}
	case Declined:
	default:
		problems = append(problems, fmt.Sprintf("verdict %q is unknown", s.Verdict))
	}
	if s.Term != nil && (s.Term.Min < 1 || s.Term.Min > s.Term.Max) {
		problems = append(problems, "term range is inverted or not positive")
	}
	if s.ScoredAt.IsZero() {
		problems = append(problems, "scored_at is missing")
	}
	return joinProblems(SubjectScored, problems)
}

// DeadLetter (loan.v1.deadletter) records a message that could not be processed, so that a
// person can see what and why; its search is finished as rejected.
type DeadLetter struct {
	SearchID   string    `json:"search_id,omitempty"`
	Subject    string    `json:"subject"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
	Data       []byte    `json:"data"` // the original payload; it never holds a raw phone
	At         time.Time `json:"at"`
	// MsgID is the original message's de-duplication id, when it had one.
	MsgID string `json:"msg_id,omitempty"`
}

// DecodeDeadLetter reads a loan.v1.deadletter payload.
func DecodeDeadLetter(data []byte) (*DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrInvalid, SubjectDeadLetter, err)
	}
	if d.Subject == "" || d.Consumer == "" || d.Reason == "" {
		return nil, fmt.Errorf("%w: %s: subject, consumer and reason are required", ErrInvalid, SubjectDeadLetter)
	}
	return &d, nil
}

func joinProblems(subject string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %v", ErrInvalid, subject, problems)
}
