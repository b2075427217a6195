// Package snapshotstore keeps the bank's pre-approvals in the JetStream object store
// contracts.BucketPreapprovals, as snapshots in the format of package preapproval. The
// import command writes contracts.PreapprovalsObject; every scoring replica reads it into an
// in-memory index (or, while there is none, builds the seed export into one with Build,
// writing nothing).
//
// # Streaming
//
// Import reads the export, hashes each phone, and writes snapshot records into the object
// store's Put through a pipe, so that its memory does not grow with the file: a few hundred
// kilobytes of buffers whatever the export's size. Put sends the snapshot in chunks and
// publishes the object's metadata last, so scoring sees either the old object whole or the
// new one whole; an import that fails or is interrupted leaves the old one in place.
//
// # Identity
//
// Every object carries, in its metadata under MetaContent, the SHA-256 of its content: the
// snapshot's bytes as they would be with a creation time of zero. It depends on the
// records, their order and the hashing key, and on nothing else: not on when the import
// ran, nor on how the export spelled its phones or ended its lines, nor on its bad rows.
// Import writes nothing when the object already holds that content, so importing the same
// export twice changes nothing, and scoring loads an object only when its content differs
// from what it serves.
//
// That needs the digest before the upload starts, since an object's metadata goes in with
// it. So Import reads the export twice: once to check it and compute the digest (reporting
// bad rows), once to upload it. The second pass computes the digest again and aborts the
// upload, before anything is published, if the export changed in between.
package snapshotstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/services/scoring/preapproval"
)

// Metadata keys of a snapshot object.
const (
	// MetaContent is the hex SHA-256 of the snapshot with its creation time zeroed: what
	// tells two imports of the same content apart from a new one.
	MetaContent = "content-sha256"
	// MetaKey is the fingerprint of the phone-hashing key (preapproval.KeyFingerprint), so
	// that a person can tell which key an object was made with without downloading it.
	MetaKey = "key-fingerprint"
	// MetaRecords and MetaBadRows count the snapshot's records and the export's bad rows.
	MetaRecords = "records"
	MetaBadRows = "bad-rows"
	// MetaSource is the export's file name, without its directory.
	MetaSource = "source"
)

// Store is the object store, with the stream behind it for Load.
type Store struct {
	jetstream.ObjectStore
	nc *nats.Conn // Load's message gets
}

// The stream and chunk subjects behind an object store, as the object store specification
// (NATS ADR-20) names them.
const (
	streamName   = "OBJ_" + contracts.BucketPreapprovals
	chunkSubject = "$O." + contracts.BucketPreapprovals + ".C."
)

// Open binds to the object store, as the provisioner made it (package provision).
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	obs, err := bus.Declare(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return js.ObjectStore(ctx, contracts.BucketPreapprovals)
	})
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("object store %s is missing: %w", contracts.BucketPreapprovals, bus.ErrNotProvisioned)
	}
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", contracts.BucketPreapprovals, err)
	}
	return &Store{ObjectStore: obs, nc: js.Conn()}, nil
}

// Source is an export to import. Import opens it twice.
type Source struct {
	// Name is recorded in the object's metadata and used in messages; a file's base name.
	Name string
	Open func() (io.ReadCloser, error)
}

// FileSource is the export in the file at path.
func FileSource(path string) Source {
	return Source{Name: filepath.Base(path), Open: func() (io.ReadCloser, error) { return os.Open(path) }}
}

// BytesSource is an export held in memory, such as the built-in demo data.
func BytesSource(name string, data []byte) Source {
	return Source{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// Progress is how far an import has got in one of its two passes over the export.
type Progress struct {
	Pass    int   // 1: checking the export; 2: uploading it
	Records int   // good rows so far
	BadRows int   // bad rows so far
	Bytes   int64 // bytes of the export read so far
	Done    bool  // the pass has read the whole export
}

// Options tune an import.
type Options struct {
	Hasher *phone.Hasher // required: the gateway's key
	// OnBadRow is called for every bad row, in order, in the first pass only.
	OnBadRow func(*preapproval.RowError)
	// OnProgress is called every ProgressEvery rows and at the end of each pass, from one
	// goroutine at a time (the second pass runs on its own goroutine).
	OnProgress func(Progress)
	// Now stamps the snapshot's creation time (nil: time.Now).
	Now func() time.Time
	// ChunkSize is the size of the object's chunks (0: 128 KiB); it must fit the server's
	// max_payload.
	ChunkSize int
}

// ProgressEvery is how many rows pass between two OnProgress calls.
const ProgressEvery = 1 << 13

// Result is what an import did.
type Result struct {
	Records     int    // records in the snapshot (good rows, duplicates included)
	BadRows     int    // rows skipped
	SourceBytes int64  // size of the export
	Content     string // hex SHA-256 of the content, as in MetaContent
	// Unchanged is true when the object already held this content: nothing was written.
	Unchanged bool
	// Info is the object as it now stands: the new version, or the unchanged one.
	Info *jetstream.ObjectInfo
}

// ErrNoRecords is returned for an export without a single good row. Storing it would
// replace every pre-approval with nothing, which is never what a nightly export means.
var ErrNoRecords = errors.New("the export holds no valid row; the stored snapshot stays")

// ErrChanged is returned when the export changed between Import's two passes.
var ErrChanged = errors.New("the export changed while it was being imported; nothing was written")

// Import stores the export src as the object name of obs unless the object already holds
// the same content (Result.Unchanged). Bad rows are reported through o.OnBadRow and
// skipped; any other problem with the export (a broken header, an I/O error) stops the
// import, and the object stays as it was.
func Import(ctx context.Context, obs jetstream.ObjectStore, name string, src Source, o Options) (*Result, error) {
	if o.Hasher == nil {
		return nil, errors.New("import pre-approvals: no phone hasher")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 128 << 10
	}
	key := preapproval.KeyFingerprint(o.Hasher)

	checked, err := pass(ctx, src, o, 1, key, nil)
	if err != nil {
		return nil, err
	}
	res := &Result{Records: checked.records, BadRows: checked.bad, SourceBytes: checked.bytes, Content: checked.content}
	if checked.records == 0 {
		return res, fmt.Errorf("import %s: %w", src.Name, ErrNoRecords)
	}
	cur, err := obs.GetInfo(ctx, name)
	switch {
	case err == nil && cur.Metadata[MetaContent] == checked.content:
		res.Unchanged, res.Info = true, cur
		return res, nil
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return res, fmt.Errorf("read object %s: %w", name, err)
	}

	meta := jetstream.ObjectMeta{
		Name:        name,
		Description: "pre-approval snapshot, format version " + strconv.Itoa(preapproval.SnapshotVersion),
		Metadata: map[string]string{
			MetaContent: checked.content,
			MetaKey:     key.String(),
			MetaRecords: strconv.Itoa(checked.records),
			MetaBadRows: strconv.Itoa(checked.bad),
			MetaSource:  src.Name,
		},
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(o.ChunkSize)},
	}
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		_, err := pass(ctx, src, o, 2, key, &upload{w: pw, want: checked.content})
		// An error here reaches Put as its reader's error, so Put publishes no metadata
		// and purges the chunks it sent.
		pw.CloseWithError(err)
		uploaded <- err
	}()
	info, putErr := obs.Put(ctx, meta, fullChunks{pr})
	pr.CloseWithError(errPutStopped) // unblocks the second pass if Put stopped reading
	if err := <-uploaded; err != nil && !errors.Is(err, errPutStopped) {
		return res, err
	}
	if putErr != nil {
		return res, fmt.Errorf("store object %s: %w", name, putErr)
	}
	res.Info = info
	return res, nil
}

var errPutStopped = errors.New("the object store stopped reading")

// Build reads the export src into an index in memory, exactly as Import would store it and
// Load read it back, and writes nothing: scoring's seed, which each replica builds for
// itself while the store holds no import, so that scoring needs no right to write or purge
// the store. Bad rows are reported through o.OnBadRow and skipped.
func Build(ctx context.Context, src Source, o Options) (*preapproval.Index, *Result, error) {
	if o.Hasher == nil {
		return nil, nil, errors.New("build pre-approvals: no phone hasher")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	key := preapproval.KeyFingerprint(o.Hasher)
	checked, err := pass(ctx, src, o, 1, key, nil)
	if err != nil {
		return nil, nil, err
	}
	res := &Result{Records: checked.records, BadRows: checked.bad, SourceBytes: checked.bytes, Content: checked.content}
	if checked.records == 0 {
		return nil, res, fmt.Errorf("build %s: %w", src.Name, ErrNoRecords)
	}
	// The snapshot streams from the second pass into the reader: memory holds the index,
	// not the snapshot too.
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		_, err := pass(ctx, src, o, 2, key, &upload{w: pw, want: checked.content})
		pw.CloseWithError(err)
		written <- err
	}()
	ix, err := preapproval.ReadSnapshot(pr)
	pr.CloseWithError(errPutStopped) // unblocks the second pass if the reader stopped
	if werr := <-written; werr != nil && !errors.Is(werr, errPutStopped) {
		return nil, res, werr
	}
	if err != nil {
		return nil, res, fmt.Errorf("build %s: %w", src.Name, err)
	}
	return ix, res, nil
}

// upload is the second pass's destination.
type upload struct {
	w    io.Writer
	want string // the first pass's content digest
}

type passResult struct {
	records, bad int
	bytes        int64
	content      string
}

// pass reads the export once. The content digest comes from a second SnapshotWriter with a
// zero creation time writing into SHA-256; to is where the real snapshot goes (pass 2).
func pass(ctx context.Context, src Source, o Options, n int, key preapproval.Fingerprint, to *upload) (passResult, error) {
	var res passResult
	f, err := src.Open()
	if err != nil {
		return res, fmt.Errorf("open %s: %w", src.Name, err)
	}
	defer f.Close()
	counted := &countingReader{r: f}
	sum := sha256.New()
	digest := preapproval.NewSnapshotWriter(sum, key, time.UnixMilli(0))
	var out *preapproval.SnapshotWriter
	if to != nil {
		out = preapproval.NewSnapshotWriter(to.w, key, o.Now())
	}
	report := func(done bool) {
		if o.OnProgress != nil {
			o.OnProgress(Progress{Pass: n, Records: res.records, BadRows: res.bad, Bytes: counted.n, Done: done})
		}
	}
	r := preapproval.NewReader(counted, o.Hasher)
	for rows := 1; ; rows++ {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var rowErr *preapproval.RowError
		switch {
		case errors.As(err, &rowErr):
			res.bad++
			if n == 1 && o.OnBadRow != nil {
				o.OnBadRow(rowErr)
			}
		case err != nil:
			return res, fmt.Errorf("read %s: %w", src.Name, err)
		default:
			res.records++
			if err := digest.Write(rec); err != nil {
				return res, err
			}
			if out != nil {
				if err := out.Write(rec); err != nil {
					return res, err
				}
			}
		}
		if rows%ProgressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			report(false)
		}
	}
	if err := digest.Close(); err != nil {
		return res, err
	}
	res.bytes = counted.n
	res.content = hex.EncodeToString(sum.Sum(nil))
	report(true)
	if out != nil {
		// Checked before the trailer goes out: a changed export never becomes an object.
		if res.content != to.want {
			return res, fmt.Errorf("import %s: %w", src.Name, ErrChanged)
		}
		if err := out.Close(); err != nil {
			return res, err
		}
	}
	return res, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fullChunks fills every Read, so that Put, which sends one chunk per Read, sends full
// chunks rather than one per write into the pipe.
type fullChunks struct{ r io.Reader }

func (f fullChunks) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && n > 0) {
		err = nil // the next Read returns io.EOF
	}
	return n, err
}

// ContentID is what identifies an object's content: its MetaContent, or, for an object
// written by something other than Import, the store's digest of its bytes.
func ContentID(info *jetstream.ObjectInfo) string {
	if c := info.Metadata[MetaContent]; c != "" {
		return c
	}
	return info.Digest
}

// Load reads the object name into an index and returns it with the object's info. It
// refuses, with an error for which Refused is true, an object that is not a complete
// snapshot of a known version or whose phones were hashed with another key than h's: with
// the wrong key every look-up would miss and every client be declined, silently.
//
// It reads the chunks one message get at a time from the stream's leader, not with
// ObjectStore.Get: that makes a consumer, which scoring may not (a consumer can be set to
// deliver anywhere: docs/security.md), and nats.go's object reader holds a lock while it
// waits for a chunk, until the context's deadline, so neither cancelling nor closing it
// interrupts a download whose chunks an import has just purged. A purged chunk is a failed
// get here, at once; one chunk at a time is held in the client.
func (s *Store) Load(ctx context.Context, name string, h *phone.Hasher) (*preapproval.Index, *jetstream.ObjectInfo, error) {
	return s.load(ctx, name, func(ix *preapproval.Index) error { return ix.CheckKey(h) })
}

// LoadAny is Load of a snapshot made with any key of keys: after a rotation of the
// phone-hash key, one made with the earlier key is still served until the import under the
// new one replaces it (scoring looks each phone up by its hash under the snapshot's key).
func (s *Store) LoadAny(ctx context.Context, name string, keys *phone.Keyring) (*preapproval.Index, *jetstream.ObjectInfo, error) {
	return s.load(ctx, name, func(ix *preapproval.Index) error {
		if keys.ByID(ix.Key().String()) == nil {
			return fmt.Errorf("%w: snapshot key %s, ours %s and %d earlier", preapproval.ErrKeyMismatch, ix.Key(), keys.Current().ID(), len(keys.Old()))
		}
		return nil
	})
}

func (s *Store) load(ctx context.Context, name string, check func(*preapproval.Index) error) (*preapproval.Index, *jetstream.ObjectInfo, error) {
	info, err := s.GetInfo(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("get object %s: %w", name, err)
	}
	ix, err := s.read(ctx, info)
	if err == nil {
		err = check(ix)
	}
	if err != nil {
		return nil, info, fmt.Errorf("object %s (nuid %s): %w", name, info.NUID, err)
	}
	return ix, info, nil
}

func (s *Store) read(ctx context.Context, info *jetstream.ObjectInfo) (*preapproval.Index, error) {
	if info.Opts != nil && info.Opts.Link != nil {
		return nil, fmt.Errorf("%w: a link, not a snapshot", jetstream.ErrBadObjectMeta)
	}
	want, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: digest %q", jetstream.ErrBadObjectMeta, info.Digest)
	}
	r := &chunkReader{ctx: ctx, nc: s.nc, subject: chunkSubject + info.NUID, left: info.Chunks, size: info.Size, want: want, sum: sha256.New()}
	ix, err := preapproval.ReadSnapshot(r)
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil {
		return nil, ctxErr
	}
	return ix, err
}

// chunkReader reads an object's chunks in order and checks them against its size and
// digest, returning jetstream.ErrDigestMismatch instead of io.EOF if they do not match.
type chunkReader struct {
	ctx     context.Context
	nc      *nats.Conn
	subject string // the object's chunks
	next    uint64 // the stream sequence to look for the next chunk from
	left    uint32 // chunks still to read
	size    uint64 // bytes still to read
	buf     []byte
	sum     hash.Hash
	want    []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.left == 0 {
			if c.size != 0 || !bytes.Equal(c.sum.Sum(nil), c.want) {
				return 0, jetstream.ErrDigestMismatch
			}
			return 0, io.EOF
		}
		m, err := bus.GetMsg(c.ctx, c.nc, streamName, bus.MsgGet{Seq: c.next, NextFor: c.subject})
		if err != nil {
			return 0, fmt.Errorf("read chunk (%d left): %w", c.left, err)
		}
		c.next = m.Seq + 1
		c.buf = m.Data
		c.left--
		if uint64(len(c.buf)) > c.size {
			return 0, jetstream.ErrDigestMismatch
		}
		c.size -= uint64(len(c.buf))
		c.sum.Write(c.buf)
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// Refused reports whether err from Load means the object itself is unusable, so that
// loading it again cannot help, as opposed to a failure to reach it.
func Refused(err error) bool {
	return errors.Is(err, preapproval.ErrCorrupt) || errors.Is(err, preapproval.ErrVersion) ||
		errors.Is(err, preapproval.ErrKeyMismatch) || errors.Is(err, preapproval.ErrTooManyGrades) ||
		errors.Is(err, jetstream.ErrDigestMismatch) || errors.Is(err, jetstream.ErrBadObjectMeta)
}
