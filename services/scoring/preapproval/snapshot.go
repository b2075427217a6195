package preapproval

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"time"

	"github.com/demobank/yacredits/pkg/money"
)

// SnapshotVersion is the snapshot format this package writes and reads.
const SnapshotVersion = 1

const (
	snapshotMagic = "YCPREAPP"
	headerLen     = len(snapshotMagic) + 2 + 8 + 8
	tagRecord     = 0x01
	tagEnd        = 0x00
	recordFixed   = 32 + 1 + 8 + 4 + 1 // hash, flags, limit, days, grade length
	trailerLen    = 8 + 4              // count, crc (after the end tag)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error ReadSnapshot returns for a snapshot that is
// truncated, damaged or not a snapshot at all.
var ErrCorrupt = errors.New("preapproval snapshot corrupt")

// ErrVersion is wrapped by the error ReadSnapshot returns for a format version it does not
// know: a newer import wrote it, and this replica must be upgraded to read it.
var ErrVersion = errors.New("preapproval snapshot version not supported")

// SnapshotWriter streams records into a snapshot as they come; it keeps none of them, so an
// import's memory does not depend on the size of the export. Not safe for concurrent use.
type SnapshotWriter struct {
	w     *bufio.Writer
	crc   uint32
	count uint64
	buf   [recordFixed + 1 + MaxGradeLen]byte
	err   error
}

// NewSnapshotWriter writes a snapshot header to w: key is the fingerprint of the key the
// records' phones were hashed with (KeyFingerprint), created the time the snapshot stands
// for. Errors surface from Write or Close.
func NewSnapshotWriter(w io.Writer, key Fingerprint, created time.Time) *SnapshotWriter {
	sw := &SnapshotWriter{w: bufio.NewWriterSize(w, 64<<10)}
	var h [headerLen]byte
	n := copy(h[:], snapshotMagic)
	binary.BigEndian.PutUint16(h[n:], SnapshotVersion)
	binary.BigEndian.PutUint64(h[n+2:], uint64(created.UnixMilli()))
	copy(h[n+10:], key[:])
	sw.write(h[:])
	return sw
}

func (sw *SnapshotWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc = crc32.Update(sw.crc, castagnoli, b)
	_, sw.err = sw.w.Write(b)
}

var errClosed = errors.New("preapproval: snapshot writer closed")

// Write appends one record. An invalid record is refused and the snapshot stays usable; an
// I/O error is final.
func (sw *SnapshotWriter) Write(r Record) error {
	if sw.err != nil {
		return sw.err
	}
	if err := r.validate(); err != nil {
		return err
	}
	b := sw.buf[:0]
	b = append(b, tagRecord)
	b = append(b, r.Hash[:]...)
	b = append(b, flagsOf(r))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Limit))
	b = binary.BigEndian.AppendUint32(b, uint32(dayOf(r.ValidUntil)))
	b = append(b, byte(len(r.Grade)))
	b = append(b, r.Grade...)
	sw.write(b)
	if sw.err != nil {
		return fmt.Errorf("write snapshot: %w", sw.err)
	}
	sw.count++
	return nil
}

// Count returns the number of records written so far.
func (sw *SnapshotWriter) Count() uint64 { return sw.count }

// Close writes the trailer and flushes. It does not close the underlying writer. Until Close
// returns nil the snapshot is incomplete, and ReadSnapshot refuses it.
func (sw *SnapshotWriter) Close() error {
	if sw.err != nil {
		if sw.err == errClosed {
			return nil
		}
		return sw.err
	}
	var t [1 + trailerLen]byte
	t[0] = tagEnd
	binary.BigEndian.PutUint64(t[1:], sw.count)
	sw.write(t[:9])
	binary.BigEndian.PutUint32(t[9:], sw.crc)
	if sw.err == nil {
		_, sw.err = sw.w.Write(t[9:])
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return fmt.Errorf("write snapshot: %w", sw.err)
	}
	sw.err = errClosed
	return nil
}

// WriteSnapshot writes every record of records as one snapshot and returns how many it
// wrote. It stops at the first record it cannot write.
func WriteSnapshot(w io.Writer, key Fingerprint, created time.Time, records iter.Seq[Record]) (uint64, error) {
	sw := NewSnapshotWriter(w, key, created)
	for r := range records {
		if err := sw.Write(r); err != nil {
			return sw.Count(), err
		}
	}
	return sw.Count(), sw.Close()
}

// ReadSnapshot reads a whole snapshot into an Index. It refuses, with an error wrapping
// ErrCorrupt or ErrVersion, anything but a complete snapshot whose checksum matches; the
// caller then keeps the index it has. It does not check the key: call Index.CheckKey.
func ReadSnapshot(r io.Reader) (*Index, error) {
	sr := snapshotReader{r: bufio.NewReaderSize(r, 64<<10)}
	var h [headerLen]byte
	if err := sr.full(h[:]); err != nil {
		return nil, corrupt("header", err)
	}
	n := len(snapshotMagic)
	if string(h[:n]) != snapshotMagic {
		return nil, fmt.Errorf("%w: not a pre-approval snapshot (bad magic)", ErrCorrupt)
	}
	if v := binary.BigEndian.Uint16(h[n:]); v != SnapshotVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, v, SnapshotVersion)
	}
	created := time.UnixMilli(int64(binary.BigEndian.Uint64(h[n+2:]))).UTC()
	var key Fingerprint
	copy(key[:], h[n+10:])

	var b Builder
	var rec [recordFixed + MaxGradeLen]byte
	for i := uint64(0); ; i++ {
		var tag [1]byte
		if err := sr.full(tag[:]); err != nil {
			return nil, corrupt(fmt.Sprintf("record %d", i), err)
		}
		if tag[0] == tagEnd {
			break
		}
		if tag[0] != tagRecord {
			return nil, fmt.Errorf("%w: record %d: unknown tag %#x", ErrCorrupt, i, tag[0])
		}
		fixed := rec[:recordFixed]
		if err := sr.full(fixed); err != nil {
			return nil, corrupt(fmt.Sprintf("record %d", i), err)
		}
		gl := int(fixed[recordFixed-1])
		if gl == 0 || gl > MaxGradeLen {
			return nil, fmt.Errorf("%w: record %d: grade length %d", ErrCorrupt, i, gl)
		}
		grade := rec[recordFixed : recordFixed+gl]
		if err := sr.full(grade); err != nil {
			return nil, corrupt(fmt.Sprintf("record %d", i), err)
		}
		if err := b.addEncoded(fixed, grade); err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", ErrCorrupt, i, err)
		}
	}
	var t [trailerLen]byte
	if err := sr.full(t[:8]); err != nil {
		return nil, corrupt("trailer", err)
	}
	want := sr.crc
	if err := sr.full(t[8:]); err != nil {
		return nil, corrupt("trailer", err)
	}
	if got := binary.BigEndian.Uint32(t[8:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, content sums to %08x", ErrCorrupt, got, want)
	}
	if count := binary.BigEndian.Uint64(t[:8]); count != uint64(b.Len()) {
		return nil, fmt.Errorf("%w: trailer counts %d records, body has %d", ErrCorrupt, count, b.Len())
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		return nil, fmt.Errorf("%w: data after the trailer", ErrCorrupt)
	}
	ix := b.Index()
	ix.created, ix.key = created, key
	return ix, nil
}

// addEncoded adds a record as the snapshot stores it, with the checks Add makes. It skips
// building a Record so that loading a few million costs no allocation per record.
func (b *Builder) addEncoded(fixed, grade []byte) error {
	e := entry{
		flags: fixed[32],
		limit: money.Amount(binary.BigEndian.Uint64(fixed[33:])),
		days:  int32(binary.BigEndian.Uint32(fixed[41:])),
	}
	copy(e.hash[:], fixed[:32])
	if e.flags&^knownFlags != 0 {
		return fmt.Errorf("unknown flags %#x", e.flags)
	}
	if e.limit <= 0 {
		return errors.New("limit is not positive")
	}
	id, ok := b.gradeID[string(grade)] // a map index by string(bytes) does not allocate
	if !ok {
		g := string(grade)
		if !ValidGrade(g) {
			return errors.New("grade is not a token")
		}
		var err error
		if id, err = b.gradeIndex(g); err != nil {
			return err
		}
	}
	e.grade = id
	b.push(e)
	return nil
}

// snapshotReader checksums every byte it reads, so the body is verified in the same pass
// that parses it.
type snapshotReader struct {
	r   *bufio.Reader
	crc uint32
}

func (s *snapshotReader) full(p []byte) error {
	if _, err := io.ReadFull(s.r, p); err != nil {
		return err
	}
	s.crc = crc32.Update(s.crc, castagnoli, p)
	return nil
}

// corrupt words a failed read: running out of bytes means truncation, anything else is the
// storage's error and is passed on unwrapped by ErrCorrupt, since the file may be fine.
func corrupt(where string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated in the %s", ErrCorrupt, where)
	}
	return fmt.Errorf("read snapshot %s: %w", where, err)
}
