package preapproval

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"slices"
	"sort"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/phone"
)

// entry is a Record packed into 48 bytes, with no pointers, so that a few million of them
// cost the garbage collector nothing to scan.
type entry struct {
	hash  [32]byte
	limit money.Amount
	days  int32  // valid_until, days since 1970-01-01 (Moscow date)
	grade uint16 // index into Index.grades
	flags uint8
}

const (
	flagCreditCard   = 1 << 0
	flagFullApproved = 1 << 1
	knownFlags       = flagCreditCard | flagFullApproved
)

func productFlag(p contracts.ProductType) uint8 {
	if p == contracts.ProductCreditCard {
		return flagCreditCard
	}
	return 0
}

func flagsOf(r Record) uint8 {
	f := productFlag(r.Product)
	if r.Kind == contracts.FullApproved {
		f |= flagFullApproved
	}
	return f
}

// compare orders entries by hash, then loans before cards.
func compare(a, b *entry) int {
	if c := bytes.Compare(a.hash[:], b.hash[:]); c != 0 {
		return c
	}
	return int(a.flags&flagCreditCard) - int(b.flags&flagCreditCard)
}

// maxGrades is how many distinct grades an index can intern (entry.grade is a uint16).
const maxGrades = 1 << 16

// ErrTooManyGrades is returned when the records name more distinct grades than an index can
// hold; a real export has a handful, so this means a broken grade column.
var ErrTooManyGrades = errors.New("preapproval: more than 65536 distinct grades")

// Entries live in chunks of chunkLen rather than one slice: a slice grown by append copies
// itself and, at the last growth, briefly needs almost twice the index's memory, which a
// replica loading a new snapshot beside the one in use cannot spare. Chunks never move.
const (
	chunkBits = 16
	chunkLen  = 1 << chunkBits // 3 MiB of entries
)

// Builder collects records into an Index. The zero value is ready to use. Not safe for
// concurrent use.
type Builder struct {
	chunks  [][]entry
	n       int
	grades  []string
	gradeID map[string]uint16
}

// Add appends a record. A record for a phone and product already added is replaced by
// this one when the index is built: the later one wins.
func (b *Builder) Add(r Record) error {
	if err := r.validate(); err != nil {
		return err
	}
	id, err := b.gradeIndex(r.Grade)
	if err != nil {
		return err
	}
	b.push(entry{
		hash:  r.Hash,
		limit: r.Limit,
		days:  dayOf(r.ValidUntil),
		grade: id,
		flags: flagsOf(r),
	})
	return nil
}

func (b *Builder) push(e entry) {
	switch {
	case b.n == 0:
		b.chunks = append(b.chunks, nil)
	case b.n%chunkLen == 0:
		b.chunks = append(b.chunks, make([]entry, 0, chunkLen))
	}
	c := &b.chunks[len(b.chunks)-1]
	if len(*c) == cap(*c) {
		// Only the first chunk grows, gently, so that a demo file of three rows costs
		// kilobytes and not a whole chunk.
		grown := make([]entry, len(*c), min(max(2*cap(*c), 64), chunkLen))
		copy(grown, *c)
		*c = grown
	}
	*c = append(*c, e)
	b.n++
}

// gradeIndex interns g, a valid grade.
func (b *Builder) gradeIndex(g string) (uint16, error) {
	if id, ok := b.gradeID[g]; ok {
		return id, nil
	}
	if len(b.grades) == maxGrades {
		return 0, ErrTooManyGrades
	}
	if b.gradeID == nil {
		b.gradeID = make(map[string]uint16)
	}
	id := uint16(len(b.grades))
	b.grades = append(b.grades, g)
	b.gradeID[g] = id
	return id, nil
}

// Len returns how many records were added, duplicates included.
func (b *Builder) Len() int { return b.n }

// Index sorts what was added into an Index and empties the Builder. The sort works in
// place: entries are distributed into their directory buckets (keys are evenly spread, so
// a bucket holds a few), then each bucket is sorted, with the order of arrival breaking ties
// so that the last record for a phone and product is the one kept.
func (b *Builder) Index() *Index {
	ix := &Index{chunks: b.chunks, n: b.n, grades: b.grades}
	*b = Builder{}
	ix.setDirBits()
	nb := 1 << ix.dirBits

	// start[k] is where bucket k begins once sorted.
	start := make([]uint32, nb+1)
	for i := range ix.n {
		start[ix.bucket(&ix.at(i).hash)+1]++
	}
	for k := 1; k <= nb; k++ {
		start[k] += start[k-1]
	}
	seq := make([]uint32, ix.n) // arrival order, moved along with the entries
	for i := range seq {
		seq[i] = uint32(i)
	}
	// American flag sort: swap each entry straight into the next free slot of its bucket.
	head := slices.Clone(start[:nb])
	for k := range nb {
		for head[k] < start[k+1] {
			i := int(head[k])
			d := ix.bucket(&ix.at(i).hash)
			if d == uint64(k) {
				head[k]++
				continue
			}
			j := int(head[d])
			head[d]++
			*ix.at(i), *ix.at(j) = *ix.at(j), *ix.at(i)
			seq[i], seq[j] = seq[j], seq[i]
		}
	}
	// Sort each bucket, then drop all but the last of equal keys. Equal keys share a
	// bucket, so the compaction can rebuild the directory as it goes.
	ix.dir = start
	w := 0
	for k := range nb {
		lo, hi := int(start[k]), int(start[k+1])
		bucketSort{ix: ix, seq: seq, lo: lo, hi: hi}.sort()
		start[k] = uint32(w)
		for i := lo; i < hi; i++ {
			if i+1 < hi && compare(ix.at(i), ix.at(i+1)) == 0 {
				continue
			}
			*ix.at(w) = *ix.at(i)
			w++
		}
	}
	start[nb] = uint32(w)
	ix.duplicates = ix.n - w
	ix.n = w
	// Give back the chunks the duplicates emptied.
	keep := (w + chunkLen - 1) / chunkLen
	ix.chunks = slices.Clone(ix.chunks[:keep])
	if keep > 0 {
		ix.chunks[keep-1] = ix.chunks[keep-1][:w-(keep-1)*chunkLen]
	}
	return ix
}

// bucketSort sorts entries lo to hi by key, then by arrival.
type bucketSort struct {
	ix     *Index
	seq    []uint32
	lo, hi int
}

// sort runs an insertion sort on the usual bucket of a few entries, which spares boxing the
// bucket into a sort.Interface, and sort.Sort on a bucket crowded by repeats of one key.
func (s bucketSort) sort() {
	n := s.Len()
	if n > 12 {
		sort.Sort(s)
		return
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && s.Less(j, j-1); j-- {
			s.Swap(j, j-1)
		}
	}
}

func (s bucketSort) Len() int { return s.hi - s.lo }
func (s bucketSort) Less(i, j int) bool {
	i, j = i+s.lo, j+s.lo
	if c := compare(s.ix.at(i), s.ix.at(j)); c != 0 {
		return c < 0
	}
	return s.seq[i] < s.seq[j]
}
func (s bucketSort) Swap(i, j int) {
	i, j = i+s.lo, j+s.lo
	*s.ix.at(i), *s.ix.at(j) = *s.ix.at(j), *s.ix.at(i)
	s.seq[i], s.seq[j] = s.seq[j], s.seq[i]
}

// Index holds pre-approvals as fixed-size entries sorted by key, with a directory on the
// leading bits of the hash. Keys are HMAC outputs, evenly spread, so each directory bucket
// holds about eight entries and a look-up touches two or three cache lines. Safe for
// concurrent reads.
type Index struct {
	chunks     [][]entry // entry i is chunks[i/chunkLen][i%chunkLen]
	n          int
	grades     []string
	dir        []uint32 // entries dir[k] to dir[k+1] have k as their leading dirBits bits
	dirBits    uint
	duplicates int
	created    time.Time
	key        Fingerprint
}

func (ix *Index) at(i int) *entry { return &ix.chunks[i>>chunkBits][i&(chunkLen-1)] }

// setDirBits picks about eight entries per bucket: fewer buckets cost a longer binary
// search, more cost memory for nothing (2^18 buckets, 1 MiB, for two million entries).
func (ix *Index) setDirBits() {
	b := bits.Len(uint(ix.n))
	b = min(max(b-3, 0), 24)
	ix.dirBits = uint(b)
}

func (ix *Index) bucket(h *[32]byte) uint64 {
	// A shift by 64 yields 0 in Go, which is the single bucket of a tiny index.
	return binary.BigEndian.Uint64(h[:8]) >> (64 - ix.dirBits)
}

// Lookup returns the pre-approval of the phone with hash for product p. Whether it has
// expired is for the caller to judge (Record.Expired), with its own clock.
func (ix *Index) Lookup(hash [32]byte, p contracts.ProductType) (Record, bool) {
	if ix == nil || ix.n == 0 {
		return Record{}, false
	}
	key := entry{hash: hash, flags: productFlag(p)}
	k := ix.bucket(&hash)
	lo, end := int(ix.dir[k]), int(ix.dir[k+1])
	hi := end
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if compare(ix.at(mid), &key) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < end {
		if e := ix.at(lo); compare(e, &key) == 0 {
			return ix.record(e), true
		}
	}
	return Record{}, false
}

func (ix *Index) record(e *entry) Record {
	r := Record{
		Hash:       e.hash,
		Product:    contracts.ProductLoan,
		Kind:       contracts.PreApproved,
		Limit:      e.limit,
		Grade:      ix.grades[e.grade],
		ValidUntil: moscowMidnight(e.days),
	}
	if e.flags&flagCreditCard != 0 {
		r.Product = contracts.ProductCreditCard
	}
	if e.flags&flagFullApproved != 0 {
		r.Kind = contracts.FullApproved
	}
	return r
}

// Len returns the number of distinct phone and product pairs.
func (ix *Index) Len() int { return ix.n }

// Duplicates returns how many records were dropped because a later one had the same phone
// and product: worth a line in the import's summary.
func (ix *Index) Duplicates() int { return ix.duplicates }

// Created returns the creation time of the snapshot the index was read from (zero for one
// made by a Builder).
func (ix *Index) Created() time.Time { return ix.created }

// Key returns the fingerprint of the key the snapshot's phones were hashed with.
func (ix *Index) Key() Fingerprint { return ix.key }

// ErrKeyMismatch is returned by CheckKey for a snapshot hashed with another key.
var ErrKeyMismatch = errors.New("preapproval: snapshot made with another phone-hashing key")

// CheckKey returns ErrKeyMismatch unless the index was hashed with h's key. Scoring must
// call it before using a snapshot: with the wrong key every look-up misses and every client
// would be rejected without an error anywhere.
func (ix *Index) CheckKey(h *phone.Hasher) error {
	if ours := KeyFingerprint(h); ours != ix.key {
		return fmt.Errorf("%w: snapshot key %s, ours %s", ErrKeyMismatch, ix.key, ours)
	}
	return nil
}

// All yields every record in index order (by hash, then loan before credit card).
func (ix *Index) All() iter.Seq[Record] {
	return func(yield func(Record) bool) {
		for _, c := range ix.chunks {
			for i := range c {
				if !yield(ix.record(&c[i])) {
					return
				}
			}
		}
	}
}
