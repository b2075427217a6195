package preapproval

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testHasher(t testing.TB) *phone.Hasher {
	t.Helper()
	h, err := phone.NewHasher(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func hashOf(t testing.TB, h *phone.Hasher, s string) [32]byte {
	t.Helper()
	n, err := phone.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum(n)
}

// rec builds the Record the reader should return for a row.
func rec(t testing.TB, h *phone.Hasher, ph string, p contracts.ProductType, k contracts.OfferDecision, roubles int64, grade, date string) Record {
	t.Helper()
	d, err := time.ParseInLocation(time.DateOnly, date, moscow)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Hash: hashOf(t, h, ph), Product: p, Kind: k, Limit: money.Roubles(roubles), Grade: grade, ValidUntil: d}
}

// readAll returns each result of Next: a Record or a *RowError, then the final error.
func readAll(r *Reader) ([]any, error) {
	var out []any
	for {
		rec, err := r.Next()
		var re *RowError
		switch {
		case err == nil:
			out = append(out, rec)
		case errors.As(err, &re):
			out = append(out, *re)
		default:
			return out, err
		}
	}
}

func TestReader(t *testing.T) {
	h := testHasher(t)
	const (
		loan = contracts.ProductLoan
		card = contracts.ProductCreditCard
		pre  = contracts.PreApproved
		full = contracts.FullApproved
	)
	tests := []struct {
		name    string
		in      string
		want    []any
		wantErr string // "" for io.EOF
	}{
		{
			name: "every phone spelling",
			in: Header + "\n" +
				"9330445040,loan,pre_approved,1000000,A,2026-12-31\n" +
				"+7 933 044-50-40,credit_card,full_approved,150000.50,B,2026-12-31\n" +
				"\"8 (933) 044-50-40\",loan,pre_approved,500,C+,2027-01-01\n",
			want: []any{
				rec(t, h, "9330445040", loan, pre, 1000000, "A", "2026-12-31"),
				func() Record {
					r := rec(t, h, "9330445040", card, full, 150000, "B", "2026-12-31")
					r.Limit += 50
					return r
				}(),
				rec(t, h, "9330445040", loan, pre, 500, "C+", "2027-01-01"),
			},
		},
		{
			name: "columns in another order, BOM, CRLF, spaces, blank line",
			in: "\uFEFFgrade,valid_until,limit,decision,product_type,phone\r\n" +
				"\r\n" +
				" A , 2026-12-31 ,1000, pre_approved ,loan, 9001112233 \r\n",
			want: []any{rec(t, h, "9001112233", loan, pre, 1000, "A", "2026-12-31")},
		},
		{
			name: "bad rows are reported with their line and reading goes on",
			in: Header + "\n" +
				"12345,loan,pre_approved,100,A,2026-12-31\n" + // 2
				"9001112233,mortgage,pre_approved,100,A,2026-12-31\n" + // 3
				"9001112233,loan,approved,100,A,2026-12-31\n" + // 4
				"9001112233,loan,pre_approved,-100,A,2026-12-31\n" + // 5
				"9001112233,loan,pre_approved,0,A,2026-12-31\n" + // 6
				"9001112233,loan,pre_approved,1.005,A,2026-12-31\n" + // 7
				"9001112233,loan,pre_approved,100,,2026-12-31\n" + // 8
				"9001112233,loan,pre_approved,100,ABCDEFGHI,2026-12-31\n" + // 9
				"9001112233,loan,pre_approved,100,A,2026-02-30\n" + // 10
				"9001112233,loan,pre_approved,100,A,31.12.2026\n" + // 11
				"9001112233,loan,pre_approved,100,A,+026-12-31\n" + // 12
				"9001112233,loan,pre_approved,100\n" + // 13
				"9001112233,loan,pre_approved,100,A,2026-12-31,extra\n" + // 14
				"\n" + // 15, skipped
				"9001112233,lo\"an,pre_approved,100,A,2026-12-31\n" + // 16
				"+79001112233,loan,pre_approved,100,A,2026-12-31\n", // 17
			want: []any{
				RowError{2, "phone: not a Russian phone number"},
				RowError{3, "product_type: want loan or credit_card"},
				RowError{4, "decision: want pre_approved or full_approved"},
				RowError{5, "limit: want roubles above zero with at most 2 decimals"},
				RowError{6, "limit: want roubles above zero with at most 2 decimals"},
				RowError{7, "limit: want roubles above zero with at most 2 decimals"},
				RowError{8, "grade: want 1-8 letters, digits, '+', '-' or '_'"},
				RowError{9, "grade: want 1-8 letters, digits, '+', '-' or '_'"},
				RowError{10, "valid_until: want a date YYYY-MM-DD"},
				RowError{11, "valid_until: want a date YYYY-MM-DD"},
				RowError{12, "valid_until: want a date YYYY-MM-DD"},
				RowError{13, "want 6 fields, got 4"},
				RowError{14, "want 6 fields, got 7"},
				RowError{16, "malformed CSV at column 14: bare \" in non-quoted-field"},
				rec(t, h, "9001112233", loan, pre, 100, "A", "2026-12-31"),
			},
		},
		{
			name: "every problem of a row in one reason",
			in:   Header + "\n" + "+1 555 0100,card,maybe,lots,?,soon\n",
			want: []any{RowError{2, "phone: not a Russian phone number; product_type: want loan or credit_card; " +
				"decision: want pre_approved or full_approved; limit: want roubles above zero with at most 2 decimals; " +
				"grade: want 1-8 letters, digits, '+', '-' or '_'; valid_until: want a date YYYY-MM-DD"}},
		},
		{
			name: "a quoted field over two lines is one record at its first line",
			in:   Header + "\n" + "\"900111\n2233\",loan,pre_approved,100,A,2026-12-31\n" + "9001112233,loan,pre_approved,100,A,2026-12-31\n",
			want: []any{
				RowError{2, "phone: not a Russian phone number"},
				rec(t, h, "9001112233", loan, pre, 100, "A", "2026-12-31"),
			},
		},
		{name: "header only", in: Header + "\n"},
		{name: "no final newline", in: Header + "\n9001112233,loan,pre_approved,100,A,2026-12-31",
			want: []any{rec(t, h, "9001112233", loan, pre, 100, "A", "2026-12-31")}},
		{name: "empty file", in: "", wantErr: "preapproval: bad header: the file is empty"},
		{
			name:    "header missing: the first row is data and is not echoed",
			in:      "9330445040,loan,pre_approved,1000000,A,2026-12-31\n",
			wantErr: "preapproval: bad header: line 1 must name the columns " + Header + ": missing column phone, missing column product_type, missing column decision, missing column limit, missing column grade, missing column valid_until, 6 unknown column(s)",
		},
		{
			name:    "missing and repeated columns",
			in:      "phone,product_type,decision,limit,grade,grade\n",
			wantErr: "preapproval: bad header: line 1 must name the columns " + Header + ": missing column valid_until, 1 repeated column(s)",
		},
		{
			name:    "an unclosed quote stops the reader",
			in:      Header + "\n" + "9001112233,loan,pre_approved,100,A,2026-12-31\n" + "\"9001112233,loan\n" + strings.Repeat("9001112233,loan,pre_approved,100,A,2026-12-31\n", 3000),
			want:    []any{rec(t, h, "9001112233", loan, pre, 100, "A", "2026-12-31")},
			wantErr: "preapproval: a record after line 2 is longer than 65536 bytes (an unclosed quote?)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(NewReader(strings.NewReader(tt.in), h))
			if tt.wantErr == "" {
				if err != io.EOF {
					t.Fatalf("final error %v, want io.EOF", err)
				}
			} else if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("final error\n got %v\nwant %s", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d results, want %d:\n%v", len(got), len(tt.want), got)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.want[i]) {
					t.Errorf("result %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestReaderIsStickyAfterTheEnd(t *testing.T) {
	r := NewReader(strings.NewReader(""), testHasher(t))
	_, err1 := r.Next()
	_, err2 := r.Next()
	if !errors.Is(err1, ErrHeader) || err1 != err2 {
		t.Fatalf("Next after a fatal error = %v, then %v; want the same ErrHeader twice", err1, err2)
	}
	r = NewReader(strings.NewReader(Header+"\n"), testHasher(t))
	for range 3 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("Next at the end = %v, want io.EOF", err)
		}
	}
}

// TestRowErrorsNeverHoldThePhone feeds every bad-row shape with a phone in every column and
// checks that no digits of it come out.
func TestRowErrorsNeverHoldThePhone(t *testing.T) {
	const ph = "9330445040"
	good := []string{ph, "loan", "pre_approved", "100", "A", "2026-12-31"}
	var rows []string
	for c := range good {
		for _, v := range []string{ph, "+7 933 044-50-40", "x" + ph, `"` + ph + `"x`} {
			row := append([]string(nil), good...)
			row[c] = v
			rows = append(rows, strings.Join(row, ","))
		}
	}
	rows = append(rows, ph, ph+","+ph, `"`+ph)
	in := Header + "\n" + strings.Join(rows, "\n") + "\n"
	r := NewReader(strings.NewReader(in), testHasher(t))
	var errs int
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			continue
		}
		errs++
		if s := fmt.Sprintf("%v %+v", err, err); strings.Contains(s, "044") || strings.Contains(s, "5040") {
			t.Errorf("error leaks the phone: %s", s)
		}
	}
	if errs < len(good)*3 {
		t.Errorf("only %d errors for %d bad rows", errs, len(rows))
	}
}

// countingReader records how much of its input was consumed.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestUnclosedQuoteDoesNotSwallowTheFile(t *testing.T) {
	in := Header + "\n\"9001112233,loan\n" + strings.Repeat("9001112233,loan,pre_approved,100,A,2026-12-31\n", 200_000)
	cr := &countingReader{r: strings.NewReader(in)}
	_, err := readAll(NewReader(cr, testHasher(t)))
	if err == nil || err == io.EOF || errors.As(err, new(*RowError)) {
		t.Fatalf("final error %v, want a fatal one", err)
	}
	if cr.n > MaxRecordBytes+8<<10 {
		t.Fatalf("read %d bytes of a %d-byte file before giving up", cr.n, len(in))
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for invalid
	}{
		{"2026-12-31", "2026-12-31"},
		{"2028-02-29", "2028-02-29"},
		{"1970-01-01", "1970-01-01"},
		{"1969-12-31", "1969-12-31"},
		{"2026-02-29", ""},
		{"2026-13-01", ""},
		{"2026-00-10", ""},
		{"2026-1-01", ""},
		{"2026/12/31", ""},
		{"2026-12-3a", ""},
		{"-026-12-31", ""},
		{"", ""},
	}
	for _, tt := range tests {
		d, ok := parseDate(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("parseDate(%q) accepted", tt.in)
			}
			continue
		}
		if got := moscowMidnight(d).Format(time.DateOnly); !ok || got != tt.want {
			t.Errorf("parseDate(%q) = %s, %v; want %s", tt.in, got, ok, tt.want)
		}
	}
}

func TestExpiry(t *testing.T) {
	r := Record{ValidUntil: moscowMidnight(mustDate(t, "2026-12-31"))}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		now  string
		want bool
	}{
		{"2026-12-30T21:00:00Z", false},      // 00:00 on the last day, Moscow
		{"2026-12-31T20:59:59Z", false},      // 23:59:59 on the last day, Moscow
		{"2026-12-31T21:00:00Z", true},       // 00:00 the next day, Moscow
		{"2026-12-31T22:30:00+02:00", false}, // 23:30 Moscow
		{"2026-12-31T23:30:00+02:00", true},  // 00:30 Moscow
		{"2027-01-01T00:00:00+03:00", true},
		{"2025-01-01T00:00:00Z", false},
	}
	for _, tt := range tests {
		if got := r.Expired(utc(tt.now)); got != tt.want {
			t.Errorf("Expired(%s) = %v, want %v", tt.now, got, tt.want)
		}
	}
	if got := r.Expires().Format(time.RFC3339); got != "2027-01-01T00:00:00+03:00" {
		t.Errorf("Expires = %s", got)
	}
}

func mustDate(t testing.TB, s string) int32 {
	t.Helper()
	d, ok := parseDate(s)
	if !ok {
		t.Fatalf("bad date %q", s)
	}
	return d
}

func TestValidGrade(t *testing.T) {
	for _, g := range []string{"A", "b", "C+", "BB-", "A_1", "ABCDEFGH"} {
		if !ValidGrade(g) {
			t.Errorf("ValidGrade(%q) = false", g)
		}
	}
	for _, g := range []string{"", "ABCDEFGHI", "A B", "A,", "Ä", "A\n"} {
		if ValidGrade(g) {
			t.Errorf("ValidGrade(%q) = true", g)
		}
	}
}
