package gateway

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
)

// The retry rule (spec §5) holds whenever the retry comes: inside the broker's de-duplication
// window and after it (shortened here to 100 ms), a retry of a done search is answered from
// its record and a different request under its id is refused, each at once (well within the
// sync budget, which used to run out first) and without publishing anything.
func TestRetryAnsweredFromTheRecordInsideAndAfterTheWindow(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 5 * time.Second
	h := startGateway(t, cfg)
	startPipeline(t, h.js, h.store, 0)
	const window = 100 * time.Millisecond
	shortenDuplicateWindow(t, h.js, window)

	for _, when := range []string{"inside the window", "after the window"} {
		t.Run(when, func(t *testing.T) {
			id := uuid.NewString()
			first := h.do("POST", apiPaths[0], "", loanBody(id, "9330445040"))
			if first.status != 200 || first.body["status"] != "done" {
				t.Fatalf("first POST = %d %s", first.status, first.raw)
			}
			if when == "after the window" {
				waitForWindowToPass(t, h.js, window)
			}
			published := loanLastSeq(t, h.js)
			start := time.Now()
			retry := h.do("POST", apiPaths[1], "", loanBody(id, "+7 933 044-50-40"))
			retryTook := time.Since(start)
			if retry.status != 200 || retry.raw != first.raw {
				t.Errorf("retry = %d %s; want the first answer again: %s", retry.status, retry.raw, first.raw)
			}
			start = time.Now()
			conflict := h.do("POST", apiPaths[0], "", loanBody(id, "9001112233"))
			conflictTook := time.Since(start)
			if conflict.status != 422 {
				t.Errorf("a different request = %d %s, want 422", conflict.status, conflict.raw)
			}
			// At once: a fifth of the budget is far more than a read takes, far less than
			// the budget a wait for a watch event that never comes would cost.
			for what, took := range map[string]time.Duration{"retry": retryTook, "conflict": conflictTook} {
				if took > cfg.SyncBudget/5 {
					t.Errorf("the %s took %s: it waited instead of answering from the record", what, took)
				}
			}
			// The work queue drops what was worked on: its last sequence counts publishes.
			if seq := loanLastSeq(t, h.js); seq != published {
				t.Errorf("the retry and the conflict published %d messages, want none", seq-published)
			}
		})
	}
}

// A retry of a search still pending waits on its record within the budget and is answered
// from it: pending, publishing nothing and writing nothing, also after the de-duplication
// window (which the old publish-first path hid).
func TestRetryOfAPendingSearchWritesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.SyncBudget = 50 * time.Millisecond
	h := startGateway(t, cfg)
	const window = 100 * time.Millisecond
	shortenDuplicateWindow(t, h.js, window)
	id := uuid.NewString()
	if res := h.do("POST", apiPaths[0], "", loanBody(id, "9330445040")); res.body["status"] != "pending" {
		t.Fatalf("first POST = %s", res.raw)
	}
	waitForWindowToPass(t, h.js, window)
	writes, published := h.bucketWrites(), loanLastSeq(t, h.js)
	if res := h.do("POST", apiPaths[0], "", loanBody(id, "9330445040")); res.status != 200 || res.body["status"] != "pending" {
		t.Fatalf("retry = %d %s", res.status, res.raw)
	}
	if n := h.bucketWrites(); n != writes {
		t.Errorf("the retry wrote %d records", n-writes)
	}
	if seq := loanLastSeq(t, h.js); seq != published {
		t.Errorf("the retry published %d messages, want none", seq-published)
	}
}

// A POST waiting on a pending record is answered from the record as it stands when the budget
// runs out, not as it was read: the watch that would have woken it may be replaying or
// stalled (here it never runs) while the search finished, and a record an operator deleted
// meanwhile is written again, so that the 200 is still backed by one.
func TestPendingAnsweredAsItStandsWhenTheBudgetEnds(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	store, err := provisiontest.Searches(t, js, 1, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := phone.NewKeyring([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	s := &searches{store: store, pub: bus.NewPublisher(js), keys: keys, conn: js.Conn(),
		notifier: newNotifier(store, newPendingTable(), 0, zerolog.Nop()), // never run: wakes nobody
		budget:   time.Millisecond, deadline: time.Minute, now: time.Now, log: zerolog.Nop()}
	for _, tt := range []struct {
		name      string
		meanwhile func(t *testing.T, rec *contracts.Search)
		want      contracts.Status
	}{
		{"finished meanwhile: done", func(t *testing.T, rec *contracts.Search) {
			offers, _ := contracts.EncodeOffers([]contracts.Offer{testOffer(rec.Request.SearchID)})
			if _, err := store.Finish(ctx, rec.Request, "", offers, nil, nil, nil, time.Now()); err != nil {
				t.Fatal(err)
			}
		}, contracts.Done},
		{"deleted meanwhile: written again, pending", func(t *testing.T, rec *contracts.Search) {
			kv, err := js.KeyValue(ctx, contracts.BucketSearches)
			if err != nil {
				t.Fatal(err)
			}
			if err := kv.Delete(ctx, rec.Request.SearchID); err != nil {
				t.Fatal(err)
			}
		}, contracts.Pending},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, err := parseLoanApproval([]byte(loanBody(uuid.NewString(), "9330445040")))
			if err != nil {
				t.Fatal(err)
			}
			s.budget = time.Millisecond
			first, err := s.submit(ctx, in)
			if err != nil || first.Status() != contracts.Pending {
				t.Fatalf("first POST = %v, %v", first, err)
			}
			s.budget = 2 * time.Second // room for the change below on a busy machine
			// Every answer the broker sends to a client's inbox, to see the retry's first
			// read answered: the record is changed after it, before the budget ends.
			watcher := natstest.Connect(t, srv.ClientURL())
			replies, err := watcher.SubscribeSync("_INBOX.>")
			if err == nil {
				err = watcher.Flush() // the server has the subscription before the retry starts
			}
			if err != nil {
				t.Fatal(err)
			}
			answered := make(chan *contracts.Search, 1)
			go func() {
				got, err := s.submit(ctx, in)
				if err != nil {
					t.Error(err)
				}
				answered <- got
			}()
			for {
				m, err := replies.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("the retry's read of the record was never answered: %v", err)
				}
				if bytes.Contains(m.Data, []byte("stream_msg_get_response")) {
					break
				}
			}
			tt.meanwhile(t, first)
			got := <-answered
			if got == nil || got.Status() != tt.want {
				t.Fatalf("answered %v, want %s", got, tt.want)
			}
			if _, _, err := store.Answer(ctx, in.key()); err != nil {
				t.Fatalf("no record backs the answer: %v", err)
			}
		})
	}
}

func loanLastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), contracts.StreamLoan)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

func shortenDuplicateWindow(t *testing.T, js jetstream.JetStream, window time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contracts.StreamLoan)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = window
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// waitForWindowToPass waits until the stream has forgotten every message id published so far:
// a probe published now is forgotten after everything before it, so once the probe's id is
// accepted again, so would any earlier one be.
func waitForWindowToPass(t *testing.T, js jetstream.JetStream, window time.Duration) {
	t.Helper()
	ctx := context.Background()
	probe := uuid.NewString()
	publish := func() (*jetstream.PubAck, error) {
		// On the stream's verdict subject, which no consumer reads in these tests.
		return js.Publish(ctx, contracts.SubjectScored, []byte("{}"), jetstream.WithMsgID(probe))
	}
	if _, err := publish(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 50*window, func() error {
		ack, err := publish()
		if err != nil {
			return err
		}
		if ack.Duplicate {
			return errors.New("the probe's id is still remembered")
		}
		return nil
	})
}
