package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/money"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
)

func request(t *testing.T) contracts.LoanRequested { return benchRequest(t) }

func benchRequest(t testing.TB) contracts.LoanRequested {
	t.Helper()
	amount, term := money.Roubles(500000), 36
	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7******5040",
		ProductType: contracts.ProductLoan, Amount: &amount, Term: &term, Props: []string{"yandex-private"},
		RequestedAt: now, Deadline: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return *req
}

// Every finished search reaches the trail, many to a batch, without the masked phone or
// Yandex's props, and with the basis of its decision; a pending one does not; a second
// writer on the same consumer neither loses nor repeats what the first wrote; and Find reads
// a search back, from a start time too.
func TestFinishedSearchesReachTheTrailInBatches(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 60*time.Second)
	store, err := provisiontest.Searches(t, js, 1, search.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1200
	ids := make([]string, n)
	offers := []byte(`[{"product_type":"loan"}]`)
	for i := range ids {
		req := request(t)
		ids[i] = req.SearchID
		basis := &contracts.Basis{Catalog: uint64(i + 1), Pricing: contracts.PricingVersion}
		if _, err := store.Finish(ctx, req, "", offers, nil, []string{"approved"}, basis, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	pending := request(t)
	if _, err := store.CreatePending(ctx, contracts.NewSearch(pending, "")); err != nil {
		t.Fatal(err)
	}

	var written atomic.Int64
	run := func(ctx context.Context) {
		w := &Writer{JS: js, Log: zerolog.Nop(), Pseudonyms: testPseudonyms,
			Written: func(k int) { written.Add(int64(k)) }}
		go func() { _ = w.Run(ctx) }()
	}
	waitWritten := func(want int64) {
		natstest.Eventually(t, 30*time.Second, func() error {
			if got := written.Load(); got < want {
				return fmt.Errorf("%d of %d written", got, want)
			}
			return nil
		})
	}
	// Two replicas' writers share the consumer.
	wctx, stop := context.WithCancel(ctx)
	run(wctx)
	run(wctx)
	waitWritten(n)
	stop()
	// Until the stopped writers' pull requests expire, the server would hand a new record to
	// one of them, and it would wait out the consumer's minute-long ack wait: the at-least-
	// once the writer promises, but longer than this test waits.
	natstest.Eventually(t, 10*time.Second, func() error {
		c, err := js.Consumer(ctx, "KV_"+contracts.BucketSearches, contracts.ConsumerAudit)
		if err != nil {
			return err
		}
		if n := c.CachedInfo().NumWaiting; n > 0 {
			return fmt.Errorf("%d pull requests of the stopped writers still open", n)
		}
		return nil
	})
	// Searches finished while no writer runs are written by the next one, and only they.
	for i := 0; i < 10; i++ {
		req := request(t)
		ids = append(ids, req.SearchID)
		if _, err := store.Finish(ctx, req, "", offers, nil, nil, &contracts.Basis{Catalog: uint64(n + i + 1)}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	run(ctx)
	waitWritten(n + 10)
	s, err := js.Stream(ctx, contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 1 200 searches in a handful of synced writes, not 1 200.
	if got, most := info.State.Msgs, uint64(2*n/MaxBatch+4); got > most {
		t.Errorf("%d batches for %d searches, want at most %d", got, n, most)
	}
	seen := map[string]int{}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < info.State.Msgs; i++ {
		m, err := cons.Next()
		if err != nil {
			t.Fatal(err)
		}
		if enc := m.Headers().Get(contracts.AuditEncodingHeader); enc != contracts.AuditEncodingS2 {
			t.Fatalf("a batch stored with encoding %q, want %q", enc, contracts.AuditEncodingS2)
		}
		data, err := contracts.AuditBatchJSON(contracts.AuditEncodingS2, m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Data()) >= len(data) {
			t.Fatalf("a batch of %d bytes stored in %d: not compressed", len(data), len(m.Data()))
		}
		if strings.Contains(string(data), "******5040") || strings.Contains(string(data), "yandex-private") {
			t.Fatalf("a batch keeps the masked phone or the props: %.300s", data)
		}
		if strings.Contains(string(data), strings.Repeat("ab", 32)) || strings.Contains(string(data), "phone_key") {
			t.Fatalf("a batch keeps the phone's hash or its key's name: %.300s", data)
		}
		b, err := contracts.DecodeAuditBatch(data)
		if err != nil {
			t.Fatal(err)
		}
		if b.PseudonymKey != testPseudonyms.ID() {
			t.Fatalf("a batch names pseudonym key %q, want %q", b.PseudonymKey, testPseudonyms.ID())
		}
		for _, e := range b.Records {
			seen[e.SearchID]++
		}
	}
	if len(seen) != n+10 || seen[pending.SearchID] != 0 {
		t.Fatalf("%d searches in the trail (pending one: %d), want the %d finished ones", len(seen), seen[pending.SearchID], n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("search %s written %d times", id, k)
		}
	}

	rec, batches, err := Find(ctx, js, ids[n-1], time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Basis == nil || rec.Basis.Catalog != n || rec.Request.PhoneHash != pseudonym(strings.Repeat("ab", 32)) || rec.Request.PhoneMasked != "" {
		t.Errorf("found %+v (basis %+v)", rec.Request, rec.Basis)
	}
	if batches < 2 {
		t.Errorf("the last search found in batch %d, want a later one", batches)
	}
	if _, _, err := Find(ctx, js, pending.SearchID, time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(pending) = %v, want ErrNotFound", err)
	}
	if _, _, err := Find(ctx, js, ids[0], time.Now().Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find from after the trail's end = %v, want ErrNotFound", err)
	}
	// From a start time: the first batch written at or after it, then on.
	if rec, _, err := Find(ctx, js, ids[n-1], time.Now().Add(-time.Hour)); err != nil || rec.Basis == nil || rec.Basis.Catalog != n {
		t.Errorf("Find from an hour ago = %+v, %v", rec, err)
	}
}

// AuditCopy cuts exactly the masked phone and the props out of a record's bytes, wherever
// they stand in the request, and tells a finished record from a pending one: what is left
// decodes to contracts.AuditRecord of the record.
func TestAuditCopy(t *testing.T) {
	done := request(t)
	noProps := request(t)
	noProps.Props = nil
	rec := func(req contracts.LoanRequested, finished bool) *contracts.Search {
		s := contracts.NewSearch(req, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		if finished {
			var err error
			if s, err = s.Finish([]byte(`[{"product_type":"loan"}]`), []string{"approved"}, time.Now()); err != nil {
				t.Fatal(err)
			}
			s.Basis = &contracts.Basis{Catalog: 7, Trail: map[string]string{"cash": "offered"}}
		}
		return s
	}
	encode := func(s *contracts.Search) []byte {
		data, err := contracts.EncodeSearch(s)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name string
		data []byte
		rec  *contracts.Search
		done bool
	}{
		{"done, with props", nil, rec(done, true), true},
		{"done, without props", nil, rec(noProps, true), true},
		{"pending", nil, rec(done, false), false},
		{"the masked phone first, spaced", []byte(`{"schema":2, "request": {"phone_masked": "+7******5040", "phone_hash": "` +
			strings.Repeat("ab", 32) + `", "product_type": "loan", "props": ["x"], "requested_at": "2026-12-01T10:00:00Z",
			"deadline": "2026-12-01T10:00:10Z"}, "done_at": null}`), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.data == nil {
				tt.data = encode(tt.rec)
			}
			got, isDone, err := AuditCopy(testID, tt.data, testPseudonyms)
			if err != nil || isDone != tt.done {
				t.Fatalf("AuditCopy = done %v, %v; want %v", isDone, err, tt.done)
			}
			if strings.Contains(string(got), "******5040") || strings.Contains(string(got), `"props"`) {
				t.Fatalf("left in: %s", got)
			}
			back, err := contracts.DecodeSearch(testID, got)
			if err != nil {
				t.Fatalf("%s: %v", got, err)
			}
			if back.Request.PhoneHash != pseudonym(strings.Repeat("ab", 32)) || back.Request.PhoneKey != "" {
				t.Fatalf("the trail keeps phone_hash %s, key %q: not the pseudonym", back.Request.PhoneHash, back.Request.PhoneKey)
			}
			if tt.rec != nil {
				want := contracts.AuditRecord(tt.rec)
				want.Request.PhoneHash = pseudonym(want.Request.PhoneHash)
				if !bytes.Equal(encode(back), encode(want)) {
					t.Errorf("kept\n%s\nwant\n%s", encode(back), encode(want))
				}
			}
		})
	}
	for _, bad := range []string{``, `[]`, `{"request": 1}`, `{"request": {"phone_masked": }`,
		`{"schema":2,"request":{"phone_hash":"short","product_type":"loan"}}`, `{"schema":2,"request":{"product_type":"loan"}}`} {
		if _, _, err := AuditCopy(testID, []byte(bad), testPseudonyms); err == nil {
			t.Errorf("AuditCopy(%q) = nil error", bad)
		}
	}
}

const testID = "e2b4948b-7d8a-4eec-875c-b1c11d7d8372"

var testPseudonyms = func() *Pseudonyms {
	p, err := NewPseudonyms([]byte(strings.Repeat("7e", 32)))
	if err != nil {
		panic(err)
	}
	return p
}()

// pseudonym is the trail's pseudonym of a phone hash, computed apart from the writer.
func pseudonym(phoneHash string) string {
	m := hmac.New(sha256.New, []byte(strings.Repeat("7e", 32)))
	m.Write([]byte(phoneHash))
	return hex.EncodeToString(m.Sum(nil))
}

// A pseudonym is the hash's under the trail's own key: the same for the same phone, another
// under another key, and never the hash itself.
func TestPseudonyms(t *testing.T) {
	other, _ := NewPseudonyms([]byte(strings.Repeat("8f", 32)))
	h := strings.Repeat("ab", 32)
	a, b, c := make([]byte, 64), make([]byte, 64), make([]byte, 64)
	testPseudonyms.Of(a, []byte(h))
	testPseudonyms.Of(b, []byte(h))
	other.Of(c, []byte(h))
	if string(a) != string(b) || string(a) == string(c) || string(a) == h || string(a) != pseudonym(h) {
		t.Errorf("pseudonyms %s %s %s of %s", a, b, c, h)
	}
	if testPseudonyms.ID() == other.ID() || len(testPseudonyms.ID()) != 16 {
		t.Errorf("key ids %q %q", testPseudonyms.ID(), other.ID())
	}
	if _, err := NewPseudonyms([]byte("short")); err == nil {
		t.Error("a short key accepted")
	}
}

// The two members side by side, the masked phone first: both cut, one comma kept right
// (found by review: the second cut began inside the first and the copy panicked).
func TestAuditCopyAdjacentMembers(t *testing.T) {
	for _, req := range []string{
		`{"phone_masked":"+7******5040","props":["x"],"phone_hash":"` + strings.Repeat("ab", 32) + `","product_type":"loan","requested_at":"2026-12-01T10:00:00Z"}`,
		`{"props":["x"],"phone_masked":"+7******5040","phone_hash":"` + strings.Repeat("ab", 32) + `","product_type":"loan","requested_at":"2026-12-01T10:00:00Z"}`,
		`{"phone_hash":"` + strings.Repeat("ab", 32) + `","phone_masked":"+7******5040","props":["x"],"product_type":"loan","requested_at":"2026-12-01T10:00:00Z"}`,
		`{"phone_hash":"` + strings.Repeat("ab", 32) + `","product_type":"loan","requested_at":"2026-12-01T10:00:00Z","phone_masked":"+7******5040","props":["x"]}`,
		`{"phone_masked":"+7******5040","phone_key":"0123456789abcdef","phone_hash":"` + strings.Repeat("ab", 32) + `","props":["x"],"product_type":"loan","requested_at":"2026-12-01T10:00:00Z"}`,
		`{"phone_hash":"` + strings.Repeat("ab", 32) + `","phone_key":"0123456789abcdef","phone_masked":"+7******5040","product_type":"loan","requested_at":"2026-12-01T10:00:00Z"}`,
	} {
		data := []byte(`{"schema":2,"request":` + req + `,"done_at":"2026-12-01T10:00:01Z"}`)
		got, done, err := safeCopy(testID, data, testPseudonyms)
		if err != nil || !done || strings.Contains(string(got), "******5040") || strings.Contains(string(got), `"props"`) ||
			strings.Contains(string(got), "phone_key") {
			t.Fatalf("AuditCopy(%s) = %s, %v, %v", data, got, done, err)
		}
		if rec, err := contracts.DecodeSearch(testID, got); err != nil || rec.Request.PhoneHash != pseudonym(strings.Repeat("ab", 32)) {
			t.Errorf("%s: %v", got, err)
		}
	}
}

// A schema-1 record keeps Yandex's props beside the request; the trail drops them there too
// and keeps the record in today's schema (found by review).
func TestAuditCopyOfASchema1Record(t *testing.T) {
	data, err := os.ReadFile("../../../pkg/contracts/testdata/search.v1.done.json")
	if err != nil {
		t.Fatal(err)
	}
	got, done, err := AuditCopy(testID, data, testPseudonyms)
	if err != nil || !done {
		t.Fatal(done, err)
	}
	if orig, _ := contracts.DecodeSearch(testID, data); strings.Contains(string(got), orig.Request.PhoneHash) {
		t.Errorf("the phone's hash kept: %s", got)
	}
	if strings.Contains(string(got), `"props"`) || strings.Contains(string(got), "phone_masked\":\"+") {
		t.Errorf("kept: %s", got)
	}
	if rec, err := contracts.DecodeSearch(testID, got); err != nil || rec.Request.PhoneMasked != "" || rec.Request.Props != nil {
		t.Errorf("%s: %+v, %v", got, rec, err)
	}
}

// No one takes a decision out of the trail: the server refuses to purge it, to delete one
// of its messages, or to turn either refusal off, whoever asks (this test is the server's
// only user, with every right).
func TestTheTrailCannotBeErased(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	// A trail made before the refusals existed gets them from the provisioner.
	old := provision.Audit(provision.Defaults(1)).Stream
	old.DenyDelete, old.DenyPurge = false, false
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := provisiontest.Searches(t, js, 1, search.Options{Log: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; !c.DenyDelete || !c.DenyPurge {
		t.Fatal("the provisioner did not make the trail undeletable")
	}
	ack, err := js.Publish(ctx, contracts.SubjectAudit, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("the trail was purged")
	}
	if err := s.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Error("a decision was deleted from the trail")
	}
	undo := s.CachedInfo().Config
	undo.DenyDelete, undo.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, undo); err == nil {
		t.Error("the refusals were turned off")
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("the trail holds %v messages (%v), want the one written", info, err)
	}
}

// Find reads a trail longer than the batches it asks for at once, in order: the search is
// found in the batch that holds it, counted as the reader reaches it, and a search in none is
// not found after the last.
func TestFindReadsALongTrailInOrder(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	provisiontest.Defaults(t, js, 1)
	const batches, at = 3*findWindow + 7, 2*findWindow + 5
	target := request(t)
	rec, err := contracts.EncodeSearch(contracts.NewSearch(target, ""))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= batches; i++ {
		b := contracts.AuditBatch{Records: []contracts.AuditEntry{{SearchID: request(t).SearchID, Record: rec}}}
		if i == at {
			b.Records = append(b.Records, contracts.AuditEntry{SearchID: target.SearchID, Record: rec})
		}
		data, err := jsonv2.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, contracts.SubjectAudit, data); err != nil {
			t.Fatal(err)
		}
	}
	got, read, err := Find(ctx, js, target.SearchID, time.Time{})
	if err != nil || got == nil || got.Request.SearchID != target.SearchID || read != at {
		t.Fatalf("Find = %+v after %d batches, %v; want it in batch %d", got, read, err, at)
	}
	if _, read, err := Find(ctx, js, request(t).SearchID, time.Time{}); !errors.Is(err, ErrNotFound) || read != batches {
		t.Fatalf("Find of a search in no batch = %v after %d batches, want ErrNotFound after %d", err, read, batches)
	}
}
