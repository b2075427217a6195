package preapproval

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
)

type key struct {
	hash    [32]byte
	product contracts.ProductType
}

// generated reads a generated export into records, failing on any bad row.
func generated(t testing.TB, o GenerateOptions) []Record {
	t.Helper()
	var buf bytes.Buffer
	if err := GenerateWith(&buf, o); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf, testHasher(t))
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func build(t testing.TB, recs []Record) *Index {
	t.Helper()
	var b Builder
	for _, r := range recs {
		if err := b.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Index()
}

func TestEntryIsCompact(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s != 48 {
		t.Fatalf("entry is %d bytes, want 48: the memory target assumes it", s)
	}
}

// TestIndexMatchesAMap checks the index against the obvious implementation, with
// duplicates (the later wins), both products and misses.
func TestIndexMatchesAMap(t *testing.T) {
	recs := generated(t, GenerateOptions{Rows: 20_000, Seed: 1})
	// Re-send every seventh record with another limit and grade: these must win.
	for i := 0; i < len(recs); i += 7 {
		r := recs[i]
		r.Limit += money.Roubles(1)
		r.Grade = "Z"
		recs = append(recs, r)
	}
	want := make(map[key]Record)
	for _, r := range recs {
		want[key{r.Hash, r.Product}] = r
	}
	ix := build(t, recs)
	if ix.Len() != len(want) || ix.Duplicates() != len(recs)-len(want) {
		t.Fatalf("Len %d, Duplicates %d; want %d, %d", ix.Len(), ix.Duplicates(), len(want), len(recs)-len(want))
	}
	for k, r := range want {
		got, ok := ix.Lookup(k.hash, k.product)
		if !ok || !reflect.DeepEqual(got, r) {
			t.Fatalf("Lookup = %+v, %v; want %+v", got, ok, r)
		}
		other := contracts.ProductLoan
		if k.product == other {
			other = contracts.ProductCreditCard
		}
		if _, ok := want[key{k.hash, other}]; !ok {
			if got, ok := ix.Lookup(k.hash, other); ok {
				t.Fatalf("Lookup of the other product found %+v", got)
			}
		}
	}
	for i := range 10_000 {
		h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		if _, ok := ix.Lookup(h, contracts.ProductLoan); ok {
			t.Fatal("a random hash was found")
		}
	}
	var all []Record
	for r := range ix.All() {
		all = append(all, r)
	}
	if len(all) != len(want) || !slices.IsSortedFunc(all, func(a, b Record) int {
		return compare(&entry{hash: a.Hash, flags: productFlag(a.Product)}, &entry{hash: b.Hash, flags: productFlag(b.Product)})
	}) {
		t.Fatalf("All yielded %d records, want %d in order", len(all), len(want))
	}
}

// TestIndexSmall covers directories of one or two buckets and keys at the very edges.
func TestIndexSmall(t *testing.T) {
	base := Record{Product: contracts.ProductLoan, Kind: contracts.PreApproved, Limit: 100, Grade: "A"}
	low, high, mid := base, base, base
	high.Hash = [32]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mid.Hash[0] = 0x80
	midCard := mid
	midCard.Product = contracts.ProductCreditCard
	for _, recs := range [][]Record{nil, {low}, {high, low}, {mid, midCard, high, low}, {low, low, low, high}} {
		ix := build(t, recs)
		for _, r := range recs {
			if got, ok := ix.Lookup(r.Hash, r.Product); !ok || got.Hash != r.Hash || got.Product != r.Product {
				t.Errorf("%d records: Lookup(%x…) = %v", len(recs), r.Hash[:2], ok)
			}
		}
		if _, ok := ix.Lookup([32]byte{0x40}, contracts.ProductLoan); ok {
			t.Errorf("%d records: found an absent key", len(recs))
		}
	}
	var nilIndex *Index
	if _, ok := nilIndex.Lookup(low.Hash, low.Product); ok {
		t.Error("a nil index found something")
	}
}

func TestIndexLaterRowWins(t *testing.T) {
	h := testHasher(t)
	in := Header + "\n" +
		"9330445040,loan,pre_approved,100000,B,2026-12-31\n" +
		"9330445040,credit_card,pre_approved,50000,B,2026-12-31\n" +
		"+7 933 044-50-40,loan,full_approved,200000,A,2027-03-31\n"
	var b Builder
	r := NewReader(strings.NewReader(in), h)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(rec); err != nil {
			t.Fatal(err)
		}
	}
	ix := b.Index()
	want := rec(t, h, "9330445040", contracts.ProductLoan, contracts.FullApproved, 200000, "A", "2027-03-31")
	if got, ok := ix.Lookup(want.Hash, contracts.ProductLoan); !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("loan = %+v, %v; want the later row %+v", got, ok, want)
	}
	if got, ok := ix.Lookup(want.Hash, contracts.ProductCreditCard); !ok || got.Limit != money.Roubles(50000) {
		t.Errorf("card = %+v, %v; the other product must stay", got, ok)
	}
	if ix.Len() != 2 || ix.Duplicates() != 1 {
		t.Errorf("Len %d, Duplicates %d; want 2, 1", ix.Len(), ix.Duplicates())
	}
}

// TestManyDuplicatesOfOneKey fills one directory bucket with repeats of a key, past the
// size where the bucket sort stops being an insertion sort.
func TestManyDuplicatesOfOneKey(t *testing.T) {
	recs := generated(t, GenerateOptions{Rows: 2000, Seed: 10})
	var b Builder
	for i, r := range recs {
		if err := b.Add(r); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			same := recs[0]
			same.Limit = money.Amount(i + 1)
			if err := b.Add(same); err != nil {
				t.Fatal(err)
			}
		}
	}
	ix := b.Index()
	if got, ok := ix.Lookup(recs[0].Hash, recs[0].Product); !ok || got.Limit != money.Amount(len(recs)-1) {
		t.Fatalf("Lookup = %+v, %v; want the last limit %d", got, ok, len(recs)-1)
	}
	if ix.Len() != len(recs) || ix.Duplicates() != len(recs)/2 {
		t.Fatalf("Len %d, Duplicates %d", ix.Len(), ix.Duplicates())
	}
}

func TestBuilderRefusesInvalidRecords(t *testing.T) {
	good := Record{Product: contracts.ProductLoan, Kind: contracts.PreApproved, Limit: 1, Grade: "A"}
	tests := []struct {
		name string
		edit func(*Record)
		want string
	}{
		{"product", func(r *Record) { r.Product = "mortgage" }, "record: unknown product type"},
		{"kind", func(r *Record) { r.Kind = "" }, "record: unknown decision kind"},
		{"limit", func(r *Record) { r.Limit = 0 }, "record: limit is not positive"},
		{"grade", func(r *Record) { r.Grade = "A B" }, "record: grade is not a token of 1-8 letters, digits, '+', '-' or '_'"},
	}
	for _, tt := range tests {
		r := good
		tt.edit(&r)
		var b Builder
		if err := b.Add(r); err == nil || err.Error() != tt.want {
			t.Errorf("%s: Add = %v, want %s", tt.name, err, tt.want)
		}
		if err := NewSnapshotWriter(io.Discard, Fingerprint{}, epoch).Write(r); err == nil || err.Error() != tt.want {
			t.Errorf("%s: Write = %v, want %s", tt.name, err, tt.want)
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	recs := generated(t, GenerateOptions{Rows: 1000, Seed: 2})
	ix := build(t, recs)
	allocs := testing.AllocsPerRun(100, func() {
		for _, r := range recs[:50] {
			if _, ok := ix.Lookup(r.Hash, r.Product); !ok {
				t.Fatal("miss")
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.1f times per 50 calls", allocs)
	}
}
