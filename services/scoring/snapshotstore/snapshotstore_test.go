package snapshotstore_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/services/scoring/preapproval"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const export = `phone,product_type,decision,limit,grade,valid_until
9330445040,loan,pre_approved,1000000,A,2099-12-31
9161234567,credit_card,full_approved,150000,B,2099-12-31
`

func setup(t *testing.T) (jetstream.JetStream, *snapshotstore.Store, *phone.Hasher) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	provisiontest.Defaults(t, js, 1)
	obs, err := snapshotstore.Open(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	h, err := phone.NewHasher([]byte("snapshotstore-test-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return js, obs, h
}

func storeSize(t *testing.T, obs jetstream.ObjectStore) uint64 {
	t.Helper()
	st, err := obs.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// The content digest ignores the creation time: a later import of the same records is
// not a new version. Another key makes other records, so it is one.
func TestContentIdentity(t *testing.T) {
	_, obs, h := setup(t)
	ctx := natstest.Context(t, time.Minute)
	at := func(d time.Duration) func() time.Time {
		return func() time.Time { return time.Date(2026, 7, 1, 3, 0, 0, 0, time.UTC).Add(d) }
	}
	first, err := snapshotstore.Import(ctx, obs, "x", snapshotstore.BytesSource("a.csv", []byte(export)), snapshotstore.Options{Hasher: h, Now: at(0)})
	if err != nil || first.Unchanged || first.Records != 2 {
		t.Fatalf("first import: %+v, %v", first, err)
	}
	again, err := snapshotstore.Import(ctx, obs, "x", snapshotstore.BytesSource("b.csv", []byte(export)), snapshotstore.Options{Hasher: h, Now: at(24 * time.Hour)})
	if err != nil || !again.Unchanged || again.Info.NUID != first.Info.NUID || again.Content != first.Content {
		t.Fatalf("same records a day later: %+v, %v", again, err)
	}
	other, _ := phone.NewHasher([]byte("snapshotstore-other-key-0123456789abcde"))
	rekeyed, err := snapshotstore.Import(ctx, obs, "x", snapshotstore.BytesSource("a.csv", []byte(export)), snapshotstore.Options{Hasher: other, Now: at(0)})
	if err != nil || rekeyed.Unchanged || rekeyed.Content == first.Content {
		t.Fatalf("another key: %+v, %v", rekeyed, err)
	}
	if snapshotstore.ContentID(rekeyed.Info) != rekeyed.Content {
		t.Errorf("ContentID = %s, want %s", snapshotstore.ContentID(rekeyed.Info), rekeyed.Content)
	}
}

// An export that changes between the two passes is not stored, and the chunks sent for it
// are purged: the store is as it was.
func TestExportChangingDuringImportStoresNothing(t *testing.T) {
	_, obs, h := setup(t)
	ctx := natstest.Context(t, time.Minute)
	if _, err := snapshotstore.Import(ctx, obs, contracts.PreapprovalsObject, snapshotstore.BytesSource("v1.csv", []byte(export)), snapshotstore.Options{Hasher: h}); err != nil {
		t.Fatal(err)
	}
	before, err := obs.GetInfo(ctx, contracts.PreapprovalsObject)
	if err != nil {
		t.Fatal(err)
	}
	size := storeSize(t, obs)

	// Big enough that the upload sends many chunks before the change is noticed.
	var big strings.Builder
	if err := preapproval.Generate(&big, 20_000, 1); err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int32
	src := snapshotstore.Source{Name: "growing.csv", Open: func() (io.ReadCloser, error) {
		data := big.String()
		if opened.Add(1) == 2 {
			data += "9330445040,loan,pre_approved,1000000,A,2099-12-31\n" // appended meanwhile
		}
		return io.NopCloser(strings.NewReader(data)), nil
	}}
	_, err = snapshotstore.Import(ctx, obs, contracts.PreapprovalsObject, src, snapshotstore.Options{Hasher: h, ChunkSize: 4 << 10})
	if !errors.Is(err, snapshotstore.ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
	}
	after, err := obs.GetInfo(ctx, contracts.PreapprovalsObject)
	if err != nil || after.NUID != before.NUID {
		t.Fatalf("object after a refused import: %+v, %v", after, err)
	}
	if got := storeSize(t, obs); got != size {
		t.Fatalf("the store holds %d bytes after a refused import, %d before: chunks left behind", got, size)
	}
}

// Load refuses what is not a snapshot, and one hashed with another key.
func TestLoadRefuses(t *testing.T) {
	_, obs, h := setup(t)
	ctx := natstest.Context(t, time.Minute)
	if _, err := obs.PutString(ctx, "junk", "not a snapshot"); err != nil {
		t.Fatal(err)
	}
	_, info, err := obs.Load(ctx, "junk", h)
	if !snapshotstore.Refused(err) || !errors.Is(err, preapproval.ErrCorrupt) {
		t.Fatalf("junk: %v", err)
	}
	if snapshotstore.ContentID(info) != info.Digest {
		t.Errorf("an object without content metadata is known by its digest")
	}

	other, _ := phone.NewHasher([]byte("snapshotstore-other-key-0123456789abcde"))
	if _, err := snapshotstore.Import(ctx, obs, "other", snapshotstore.BytesSource("a.csv", []byte(export)), snapshotstore.Options{Hasher: other}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := obs.Load(ctx, "other", h); !snapshotstore.Refused(err) || !errors.Is(err, preapproval.ErrKeyMismatch) {
		t.Fatalf("another key: %v", err)
	}
	ix, _, err := obs.Load(ctx, "other", other)
	if err != nil || ix.Len() != 2 {
		t.Fatalf("the right key: %v", err)
	}

	if _, _, err := obs.Load(ctx, "missing", h); snapshotstore.Refused(err) || !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

// Open binds to a store as it is; it never reconfigures one.
func TestOpenKeepsAnExistingStore(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, time.Minute)
	cfg := provision.Preapprovals(provision.Defaults(1)).Objects
	cfg.Description = "set up by hand"
	if _, err := js.CreateObjectStore(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	obs, err := snapshotstore.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Status(ctx)
	if err != nil || st.Description() != "set up by hand" || st.Replicas() != 1 || st.Storage() != jetstream.FileStorage {
		t.Fatalf("status %+v, %v", st, err)
	}
}

// A load reads with message gets alone: it leaves no consumer on the store, which a
// scoring user could otherwise set to deliver the snapshot anywhere (docs/security.md); and
// it ends with its context.
func TestLoadMakesNoConsumerAndEndsWithItsContext(t *testing.T) {
	js, obs, h := setup(t)
	ctx := natstest.Context(t, time.Minute)
	if _, err := snapshotstore.Import(ctx, obs, "x", snapshotstore.BytesSource("a.csv", []byte(export)), snapshotstore.Options{Hasher: h}); err != nil {
		t.Fatal(err)
	}
	ix, _, err := obs.Load(ctx, "x", h)
	if err != nil || ix.Len() == 0 {
		t.Fatalf("load: %v", err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+contracts.BucketPreapprovals)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("%d consumers on the store after a load, want none", n)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := obs.Load(ended, "x", h); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// A download whose chunks never come fails at once, so that a
// scoring replica retries instead of waiting out the load's two minutes (a replica not
// ready after a minute in the fault suite).
func TestLoadGivesUpOnChunksThatNeverCome(t *testing.T) {
	obs, h, _ := withoutChunks(t)
	ctx := natstest.Context(t, time.Minute)
	done := make(chan error, 1)
	go func() {
		_, _, err := obs.Load(ctx, "x", h)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || snapshotstore.Refused(err) || ctx.Err() != nil {
			t.Fatalf("err = %v, want a failure to read that a retry can heal", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Load still waits for chunks that never come")
	}
}

// withoutChunks imports object "x" and purges its chunks, as a newer import does to the
// version a load is reading.
func withoutChunks(t *testing.T) (*snapshotstore.Store, *phone.Hasher, jetstream.Stream) {
	t.Helper()
	js, obs, h := setup(t)
	ctx := natstest.Context(t, time.Minute)
	res, err := snapshotstore.Import(ctx, obs, "x", snapshotstore.BytesSource("a.csv", []byte(export)), snapshotstore.Options{Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+contracts.BucketPreapprovals)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject("$O."+contracts.BucketPreapprovals+".C."+res.Info.NUID)); err != nil {
		t.Fatal(err)
	}
	return obs, h, stream
}

// Build makes, in memory, the index Import would store and Load read back: the same content,
// the same key, the same answers; and it writes nothing to the store.
func TestBuildIsWhatImportStores(t *testing.T) {
	_, obs, h := setup(t)
	ctx := natstest.Context(t, time.Minute)
	src := snapshotstore.BytesSource("a.csv", []byte(export+"not,a,row\n"))
	built, res, err := snapshotstore.Build(ctx, src, snapshotstore.Options{Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(ctx, "x"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("Build wrote to the store: %v", err)
	}
	imported, err := snapshotstore.Import(ctx, obs, "x", src, snapshotstore.Options{Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	loaded, _, err := obs.Load(ctx, "x", h)
	if err != nil {
		t.Fatal(err)
	}
	if res.Content != imported.Content || res.Records != 2 || res.BadRows != 1 {
		t.Fatalf("built %+v, imported %+v", res, imported)
	}
	if built.Len() != loaded.Len() || built.Key() != loaded.Key() {
		t.Fatalf("built %d entries under key %s, loaded %d under %s", built.Len(), built.Key(), loaded.Len(), loaded.Key())
	}
	p, err := phone.Parse("+79161234567")
	if err != nil {
		t.Fatal(err)
	}
	b, okB := built.Lookup(h.Sum(p), contracts.ProductCreditCard)
	l, okL := loaded.Lookup(h.Sum(p), contracts.ProductCreditCard)
	if !okB || !okL || b.Limit != l.Limit || b.Grade != l.Grade {
		t.Fatalf("built %+v %v, loaded %+v %v", b, okB, l, okL)
	}
	if _, _, err := snapshotstore.Build(ctx, snapshotstore.BytesSource("empty.csv", []byte("phone,product_type,decision,limit,grade,valid_until\n")),
		snapshotstore.Options{Hasher: h}); !errors.Is(err, snapshotstore.ErrNoRecords) {
		t.Fatalf("an export without records: %v", err)
	}
}
