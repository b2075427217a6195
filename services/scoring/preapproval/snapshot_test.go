package preapproval

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
)

var epoch = time.Date(2026, 7, 1, 2, 0, 0, 123_000_000, time.UTC)

func snapshotOf(t testing.TB, recs []Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := WriteSnapshot(&buf, KeyFingerprint(testHasher(t)), epoch, slices.Values(recs))
	if err != nil || n != uint64(len(recs)) {
		t.Fatalf("WriteSnapshot = %d, %v", n, err)
	}
	return buf.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	recs := generated(t, GenerateOptions{Rows: 5000, Seed: 3})
	recs = append(recs, recs[10]) // a duplicate: the snapshot keeps it, the index drops it
	recs[len(recs)-1].Limit++
	snap := snapshotOf(t, recs)
	ix, err := ReadSnapshot(bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	want := build(t, recs)
	if !reflect.DeepEqual(slices.Collect(ix.All()), slices.Collect(want.All())) {
		t.Error("the snapshot's index differs from the records'")
	}
	if ix.Duplicates() != 1 || !ix.Created().Equal(epoch) || ix.Key() != KeyFingerprint(testHasher(t)) {
		t.Errorf("Duplicates %d, Created %v, Key %v", ix.Duplicates(), ix.Created(), ix.Key())
	}
	if err := ix.CheckKey(testHasher(t)); err != nil {
		t.Error(err)
	}
	other, _ := phone.NewHasher([]byte(strings.Repeat("k", 32)))
	if err := ix.CheckKey(other); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("CheckKey with another key = %v", err)
	}
}

func TestKeyFingerprint(t *testing.T) {
	a := KeyFingerprint(testHasher(t))
	b := KeyFingerprint(testHasher(t))
	other, _ := phone.NewHasher([]byte(strings.Repeat("k", 32)))
	if a != b || a == KeyFingerprint(other) || a == (Fingerprint{}) {
		t.Fatalf("fingerprints %v %v %v", a, b, KeyFingerprint(other))
	}
	// HMAC-SHA256 of "+70000000000" under testKey, computed independently with
	// `printf '+70000000000' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef`.
	if got := a.String(); got != "16de42823b42eb28" {
		t.Errorf("fingerprint %s", got)
	}
}

// TestSnapshotRefusesEveryTruncationAndFlip cuts a small snapshot at every length and flips
// every byte of it: each damaged copy must be refused.
func TestSnapshotRefusesEveryTruncationAndFlip(t *testing.T) {
	snap := snapshotOf(t, generated(t, GenerateOptions{Rows: 5, Seed: 4}))
	for n := range len(snap) {
		_, err := ReadSnapshot(bytes.NewReader(snap[:n]))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut at %d of %d: %v", n, len(snap), err)
		}
	}
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x41
		if _, err := ReadSnapshot(bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

func TestSnapshotErrors(t *testing.T) {
	recs := generated(t, GenerateOptions{Rows: 3, Seed: 5})
	snap := snapshotOf(t, recs)
	end := len(snap) - 1 - trailerLen // offset of the end tag
	// resum replaces the trailer's checksum so that a deliberate edit gets past it.
	resum := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
		return b
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(snap)) }
	tests := []struct {
		name string
		in   []byte
		want string
		is   error
	}{
		{"empty", nil, "preapproval snapshot corrupt: truncated in the header", ErrCorrupt},
		{"not a snapshot", []byte(Header + "\n9330445040,loan,pre_approved,1,A,2026-12-31\n"),
			"preapproval snapshot corrupt: not a pre-approval snapshot (bad magic)", ErrCorrupt},
		{"newer version", edit(func(b []byte) []byte { b[9] = 2; return b }),
			"preapproval snapshot version not supported: version 2, this build reads 1", ErrVersion},
		{"bad checksum", edit(func(b []byte) []byte { b[headerLen+5] ^= 1; return b }),
			"preapproval snapshot corrupt: checksum", ErrCorrupt},
		{"data after the trailer", append(bytes.Clone(snap), 0),
			"preapproval snapshot corrupt: data after the trailer", ErrCorrupt},
		{"count does not match", edit(func(b []byte) []byte { b[end+8]++; return resum(b) }),
			"preapproval snapshot corrupt: trailer counts 4 records, body has 3", ErrCorrupt},
		{"unknown tag", edit(func(b []byte) []byte { b[headerLen] = 7; return resum(b) }),
			"preapproval snapshot corrupt: record 0: unknown tag 0x7", ErrCorrupt},
		{"unknown flags", edit(func(b []byte) []byte { b[headerLen+1+32] |= 0x80; return resum(b) }),
			"preapproval snapshot corrupt: record 0: unknown flags 0x", ErrCorrupt},
		{"zero limit", edit(func(b []byte) []byte { clear(b[headerLen+1+33 : headerLen+1+41]); return resum(b) }),
			"preapproval snapshot corrupt: record 0: limit is not positive", ErrCorrupt},
		{"grade length", edit(func(b []byte) []byte { b[headerLen+1+45] = 0; return resum(b) }),
			"preapproval snapshot corrupt: record 0: grade length 0", ErrCorrupt},
		{"no trailer", snap[:end], "preapproval snapshot corrupt: truncated in the record 3", ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix, err := ReadSnapshot(bytes.NewReader(tt.in))
			if ix != nil || !errors.Is(err, tt.is) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("ReadSnapshot = %v, %v; want %s…", ix, err, tt.want)
			}
		})
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestSnapshotWriter(t *testing.T) {
	recs := generated(t, GenerateOptions{Rows: 3000, Seed: 6})
	sw := NewSnapshotWriter(&failingWriter{after: 100 << 10}, Fingerprint{}, epoch)
	var err error
	for _, r := range recs {
		if err = sw.Write(r); err != nil {
			break
		}
	}
	if err == nil {
		err = sw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("writing past a failing writer: %v", err)
	}
	if err2 := sw.Close(); err2 == nil {
		t.Fatal("Close after a write error succeeded")
	}

	var buf bytes.Buffer
	sw = NewSnapshotWriter(&buf, Fingerprint{}, epoch)
	bad := Record{Product: contracts.ProductLoan}
	if err := sw.Write(bad); err == nil {
		t.Fatal("an invalid record was written")
	}
	if err := sw.Write(recs[0]); err != nil {
		t.Fatalf("a good record after a refused one: %v", err)
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sw.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := sw.Write(recs[1]); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	ix, err := ReadSnapshot(&buf)
	if err != nil || ix.Len() != 1 || sw.Count() != 1 {
		t.Fatalf("ReadSnapshot = %v, %v; Count %d", ix, err, sw.Count())
	}
}
