package preapproval

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

// Header is the export's header line in its documented order; any order of the same six
// names is accepted.
const Header = "phone,product_type,decision,limit,grade,valid_until"

// MaxRecordBytes bounds one CSV record. encoding/csv keeps a quoted field open across lines,
// so one stray quote would otherwise pull the rest of a multi-gigabyte file into memory.
const MaxRecordBytes = 64 << 10

// RowError is a bad row. Reading goes on after it. Reason names the field and what it should
// hold, never the field's content.
type RowError struct {
	Line   int // physical line in the file; the header is line 1
	Reason string
}

// Error says where and what, e.g. "line 12: limit: want roubles above zero …".
func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// ErrHeader is wrapped by the error Next returns when the first line is not the header.
var ErrHeader = errors.New("preapproval: bad header")

// errRecordTooLong is what recordLimit returns; Next turns it into a fatal error.
var errRecordTooLong = errors.New("record too long")

const (
	colPhone = iota
	colProduct
	colDecision
	colLimit
	colGrade
	colValidUntil
	numColumns
)

var columnNames = [numColumns]string{"phone", "product_type", "decision", "limit", "grade", "valid_until"}

// Reader streams Records out of an export. Its memory is bounded by MaxRecordBytes whatever
// the size of the file. Not safe for concurrent use.
type Reader struct {
	csv     *csv.Reader
	limit   *recordLimit
	hasher  *phone.Hasher
	col     [numColumns]int // position of each column in a row
	started bool
	line    int               // where the last record read started
	err     error             // sticky: io.EOF or a fatal error
	grades  map[string]string // interned grades, so a Record does not pin its CSV line
	reasons []string
}

// NewReader returns a Reader of the export in r that hashes phones with h.
func NewReader(r io.Reader, h *phone.Hasher) *Reader {
	lim := &recordLimit{r: r}
	c := csv.NewReader(lim)
	c.ReuseRecord = true
	c.FieldsPerRecord = -1 // checked in Next, to report it as a RowError with our wording
	return &Reader{csv: c, limit: lim, hasher: h, grades: make(map[string]string)}
}

// Next returns the next good record. A bad row yields a *RowError and the following call
// reads on. At the end it returns io.EOF; after any other error the reader is done and
// returns that error again.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if !r.started {
		r.started = true
		if err := r.readHeader(); err != nil {
			r.err = err
			return Record{}, err
		}
	}
	r.limit.n = 0
	fields, err := r.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		switch {
		case err == io.EOF:
			r.err = io.EOF
		case errors.As(err, &pe):
			r.line = pe.StartLine
			// encoding/csv resumes on the next line after a malformed one, and its
			// ParseError reasons quote no content.
			return Record{}, &RowError{Line: pe.StartLine, Reason: fmt.Sprintf("malformed CSV at column %d: %v", pe.Column, pe.Err)}
		case errors.Is(err, errRecordTooLong):
			r.err = fmt.Errorf("preapproval: a record after line %d is longer than %d bytes (an unclosed quote?)", r.line, MaxRecordBytes)
		default:
			r.err = fmt.Errorf("preapproval: read export: %w", err)
		}
		return Record{}, r.err
	}
	line, _ := r.csv.FieldPos(0)
	r.line = line
	if len(fields) != numColumns {
		return Record{}, &RowError{Line: line, Reason: fmt.Sprintf("want %d fields, got %d", numColumns, len(fields))}
	}
	rec, ok := r.parse(fields)
	if !ok {
		return Record{}, &RowError{Line: line, Reason: strings.Join(r.reasons, "; ")}
	}
	return rec, nil
}

// parse fills a Record from one row, collecting every problem in r.reasons so that a row
// with two mistakes is fixed in one round.
func (r *Reader) parse(fields []string) (Record, bool) {
	r.reasons = r.reasons[:0]
	field := func(c int) string { return strings.TrimSpace(fields[r.col[c]]) }
	var rec Record

	n, err := phone.Parse(field(colPhone))
	if err != nil {
		r.reasons = append(r.reasons, "phone: not a Russian phone number")
	}
	switch p := contracts.ProductType(field(colProduct)); p {
	case contracts.ProductLoan, contracts.ProductCreditCard:
		rec.Product = p
	default:
		r.reasons = append(r.reasons, "product_type: want loan or credit_card")
	}
	switch k := contracts.OfferDecision(field(colDecision)); k {
	case contracts.PreApproved, contracts.FullApproved:
		rec.Kind = k
	default:
		r.reasons = append(r.reasons, "decision: want pre_approved or full_approved")
	}
	if a, err := money.ParseAmount(field(colLimit)); err != nil || a <= 0 {
		r.reasons = append(r.reasons, "limit: want roubles above zero with at most 2 decimals")
	} else {
		rec.Limit = a
	}
	if g := field(colGrade); ValidGrade(g) {
		rec.Grade = r.intern(g)
	} else {
		r.reasons = append(r.reasons, "grade: want 1-8 letters, digits, '+', '-' or '_'")
	}
	if d, ok := parseDate(field(colValidUntil)); ok {
		rec.ValidUntil = moscowMidnight(d)
	} else {
		r.reasons = append(r.reasons, "valid_until: want a date YYYY-MM-DD")
	}
	if len(r.reasons) > 0 {
		return Record{}, false
	}
	// Hash last: a bad row costs no HMAC.
	rec.Hash = r.hasher.Sum(n)
	return rec, true
}

func (r *Reader) readHeader() error {
	fields, err := r.csv.Read()
	switch {
	case err == io.EOF:
		return fmt.Errorf("%w: the file is empty", ErrHeader)
	case errors.Is(err, errRecordTooLong):
		return fmt.Errorf("%w: line 1 is longer than %d bytes", ErrHeader, MaxRecordBytes)
	case err != nil:
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%w: malformed CSV at line %d, column %d: %v", ErrHeader, pe.StartLine, pe.Column, pe.Err)
		}
		return fmt.Errorf("preapproval: read export: %w", err)
	}
	if len(fields) > 0 {
		fields[0] = strings.TrimPrefix(fields[0], "\uFEFF")
	}
	for i := range r.col {
		r.col[i] = -1
	}
	unknown, repeated := 0, 0
	for i, f := range fields {
		c := columnIndex(strings.TrimSpace(f))
		switch {
		case c < 0:
			unknown++
		case r.col[c] >= 0:
			repeated++
		default:
			r.col[c] = i
		}
	}
	var problems []string
	for c, i := range r.col {
		if i < 0 {
			problems = append(problems, "missing column "+columnNames[c])
		}
	}
	// Unknown names are counted, not quoted: without a header the first line is data, and
	// its first field a phone number.
	if unknown > 0 {
		problems = append(problems, fmt.Sprintf("%d unknown column(s)", unknown))
	}
	if repeated > 0 {
		problems = append(problems, fmt.Sprintf("%d repeated column(s)", repeated))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: line 1 must name the columns %s: %s", ErrHeader, Header, strings.Join(problems, ", "))
	}
	return nil
}

func columnIndex(name string) int {
	for i, n := range columnNames {
		if n == name {
			return i
		}
	}
	return -1
}

// intern returns a shared copy of the grade: the field is a slice of its whole CSV line, and
// an export has a handful of grades. The table is bounded so that a file of distinct junk
// grades cannot grow it.
func (r *Reader) intern(g string) string {
	if s, ok := r.grades[g]; ok {
		return s
	}
	s := strings.Clone(g)
	if len(r.grades) < 256 {
		r.grades[s] = s
	}
	return s
}

// parseDate reads exactly YYYY-MM-DD, a real calendar date, into days since 1970-01-01.
func parseDate(s string) (int32, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	y, ok1 := digits(s[0:4])
	m, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 {
		return 0, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Year() != y || int(t.Month()) != m || t.Day() != d {
		return 0, false // 2026-02-30 and the like, which time.Date would normalise
	}
	return int32(t.Unix() / secondsPerDay), true
}

// digits reads unsigned decimal digits; strconv.Atoi would also take a sign.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// recordLimit fails a read once n bytes have been taken since Next last reset it. It sits
// under csv's 4 KiB buffer, so a record's budget is MaxRecordBytes less one buffer at worst.
type recordLimit struct {
	r io.Reader
	n int
}

func (l *recordLimit) Read(p []byte) (int, error) {
	if l.n >= MaxRecordBytes {
		return 0, errRecordTooLong
	}
	if rest := MaxRecordBytes - l.n; len(p) > rest {
		p = p[:rest]
	}
	k, err := l.r.Read(p)
	l.n += k
	return k, err
}
