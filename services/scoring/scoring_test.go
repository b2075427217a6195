package scoring_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/logtest"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision/provisiontest"
	"github.com/demobank/yacredits/pkg/search"
	"github.com/demobank/yacredits/pkg/testphones"
	"github.com/demobank/yacredits/services/scoring"
	"github.com/demobank/yacredits/services/scoring/policy"
	"github.com/demobank/yacredits/services/scoring/preapproval"
	"github.com/demobank/yacredits/services/scoring/snapshotstore"
)

func TestMain(m *testing.M) {
	if childMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

const (
	gatewayKey = "scoring-test-key-the-gateways-0123456789"
	otherKey   = "scoring-test-key-someone-elses-012345678"
)

// rig is a real JetStream server with the searches bucket the gateway would have made,
// and the scoring service under test running against it.
type rig struct {
	t     *testing.T
	js    jetstream.JetStream
	store *search.Store
	pub   *bus.Publisher
	obs   *snapshotstore.Store
	logs  *logBuffer
	url   string

	scored map[string]*contracts.Scored // by search id, as read off the stream
	next   uint64                       // the next LOAN stream sequence to read
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	ctx := natstest.Context(t, time.Minute)
	store, err := provisiontest.Searches(t, js, 1, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := snapshotstore.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, js: js, store: store, pub: bus.NewPublisher(js), obs: obs, logs: &logBuffer{},
		url: srv.ClientURL(), scored: map[string]*contracts.Scored{}, next: 1}
}

// start runs scoring.Run, with its own connection, until the test ends.
func (r *rig) start(env map[string]string) {
	r.t.Helper()
	vars := map[string]string{"PHONE_HASH_KEY": gatewayKey, "NATS_URL": r.url}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := scoring.LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		r.t.Fatal(err)
	}
	_, js := natstest.JetStream(r.t, r.url)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- scoring.Run(ctx, cfg, scoring.Deps{JS: js, Log: zerolog.New(r.logs)}) }()
	r.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("scoring.Run: %v", err)
		}
	})
}

// importCSV stores an export as the operator's import does, hashed with key.
func (r *rig) importCSV(key, name, csv string) *snapshotstore.Result {
	r.t.Helper()
	h, err := phone.NewHasher([]byte(key))
	if err != nil {
		r.t.Fatal(err)
	}
	res, err := snapshotstore.Import(natstest.Context(r.t, time.Minute), r.obs, contracts.PreapprovalsObject,
		snapshotstore.BytesSource(name, []byte(csv)), snapshotstore.Options{Hasher: h})
	if err != nil {
		r.t.Fatal(err)
	}
	return res
}

// request stores a search for the phone's loan, as the gateway does, and publishes it.
func (r *rig) request(number string) string {
	return r.requestUnder(number, "")
}

// requestUnder is request from a gateway holding keys: the first hashes the phone and is
// named, the rest are earlier keys the request carries the phone's hash under. None: the
// gateway's key, unnamed, as before keys were named.
func (r *rig) requestUnder(number string, keys ...string) string {
	r.t.Helper()
	n, err := phone.Parse(number)
	if err != nil {
		r.t.Fatal(err)
	}
	if keys[0] == "" {
		keys = []string{gatewayKey}
	}
	h, err := phone.NewHasher([]byte(keys[0]))
	if err != nil {
		r.t.Fatal(err)
	}
	now := time.Now().UTC()
	msg := contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: h.Hex(n), PhoneMasked: n.Masked(),
		ProductType: contracts.ProductLoan, RequestedAt: now, Deadline: now.Add(time.Minute),
	}
	if len(keys) > 1 || keys[0] != gatewayKey {
		msg.PhoneKey = h.ID()
		for _, k := range keys[1:] {
			e, _ := phone.NewHasher([]byte(k))
			if msg.EarlierHashes == nil {
				msg.EarlierHashes = map[string]string{}
			}
			msg.EarlierHashes[e.ID()] = e.Hex(n)
		}
	}
	req, err := contracts.NewLoanRequested(msg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx := natstest.Context(r.t, time.Minute)
	if _, err := r.store.CreatePending(ctx, contracts.NewSearch(*req, "")); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.pub.Publish(ctx, contracts.SubjectRequested, req.SearchID,
		contracts.RequestMsgID(*req, 0), req); err != nil {
		r.t.Fatal(err)
	}
	return req.SearchID
}

// score asks scoring about the phone and returns its answer, read off the LOAN stream.
func (r *rig) score(number string) *contracts.Scored {
	r.t.Helper()
	return r.scoreUnder(number, "")
}

// scoreUnder is score of a request made as requestUnder makes it.
func (r *rig) scoreUnder(number string, keys ...string) *contracts.Scored {
	r.t.Helper()
	id := r.requestUnder(number, keys...)
	var s *contracts.Scored
	natstest.Eventually(r.t, 20*time.Second, func() error {
		r.readScored()
		if s = r.scored[id]; s == nil {
			return fmt.Errorf("no score for search %s", id)
		}
		return nil
	})
	return s
}

func (r *rig) readScored() {
	r.t.Helper()
	ctx := natstest.Context(r.t, time.Minute)
	stream, err := r.js.Stream(ctx, contracts.StreamLoan)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for ; r.next <= info.State.LastSeq; r.next++ {
		m, err := stream.GetMsg(ctx, r.next)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			r.t.Fatal(err)
		}
		if m.Subject != contracts.SubjectScored {
			continue
		}
		s, err := contracts.DecodeScored(m.Data)
		if err != nil {
			r.t.Fatalf("scored message %d: %v", r.next, err)
		}
		r.scored[s.Request.SearchID] = s
	}
}

// verdictBecomes asks again, a new search each time, until the phone gets want: for a swap
// that happens when the watch reports the new snapshot.
func (r *rig) verdictBecomes(number string, want contracts.Verdict, reasons ...string) {
	r.t.Helper()
	natstest.Eventually(r.t, 30*time.Second, func() error {
		if s := r.score(number); s.Verdict != want || !slices.Equal(s.Reasons, reasons) {
			return fmt.Errorf("%s: %s %v, want %s %v", number, s.Verdict, s.Reasons, want, reasons)
		}
		return nil
	})
}

func (r *rig) expect(number string, want contracts.Verdict, reasons ...string) {
	r.t.Helper()
	if s := r.score(number); s.Verdict != want || !slices.Equal(s.Reasons, reasons) {
		r.t.Fatalf("%s: %s %v, want %s %v", number, s.Verdict, s.Reasons, want, reasons)
	}
}

// logBuffer collects the service's JSON log for the tests to wait on.
type logBuffer struct{ logtest.Buffer }

// has reports whether a line has every one of parts.
func (l *logBuffer) has(parts ...string) bool {
lines:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return true
	}
	return false
}

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func (l *logBuffer) waitFor(t *testing.T, parts ...string) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, func() error {
		if !l.has(parts...) {
			return fmt.Errorf("no log line with %q", parts)
		}
		return nil
	})
}

const (
	clientX = "9997654321" // in the first import only
	clientY = "9997654322" // in both; expired in the second
	clientZ = "9997654323" // in the second only
)

const exportV1 = `phone,product_type,decision,limit,grade,valid_until
9997654321,loan,pre_approved,800000,A,2099-12-31
9997654322,loan,full_approved,600000,B,2099-12-31
`

const exportV2 = `phone,product_type,decision,limit,grade,valid_until
9997654322,loan,full_approved,600000,B,2020-01-31
9997654323,loan,pre_approved,400000,B,2099-12-31
`

// A fresh store is seeded with the demo data: its client is approved, an unknown phone is
// declined for having no pre-approval.
func TestUnknownPhoneIsDeclined(t *testing.T) {
	r := newRig(t)
	r.start(nil)
	r.expect("9330445040", contracts.Approved, policy.ReasonApproved) // in the demo data
	r.expect("9990000000", contracts.Declined, policy.ReasonNoPreapproval)
}

// Imports reach a running service without a restart: the new snapshot replaces the old as a
// whole, so a client dropped from the export is declined and an expired one is declined
// as expired, as the default policy says.
func TestSwapsToEachNewSnapshotWithoutRestart(t *testing.T) {
	r := newRig(t)
	r.start(nil)
	r.expect(clientX, contracts.Declined, policy.ReasonNoPreapproval) // the demo seed is served

	r.importCSV(gatewayKey, "v1.csv", exportV1)
	r.verdictBecomes(clientX, contracts.Approved, policy.ReasonApproved)
	r.expect(clientY, contracts.Approved, policy.ReasonApproved)
	r.expect("9330445040", contracts.Declined, policy.ReasonNoPreapproval) // the seed is not served any more

	r.importCSV(gatewayKey, "v2.csv", exportV2)
	r.verdictBecomes(clientX, contracts.Declined, policy.ReasonNoPreapproval)
	r.expect(clientY, contracts.Declined, policy.ReasonExpired)
	r.expect(clientZ, contracts.Approved, policy.ReasonApproved)

	// Each version was loaded once. (The line is logged just after the swap.)
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := r.logs.count("pre-approvals loaded"); n != 3 {
			return fmt.Errorf("%d snapshots loaded, want 3 (seed, v1, v2)", n)
		}
		return nil
	})
	// The same export again stores nothing, so there is nothing to swap.
	if res := r.importCSV(gatewayKey, "v2-again.csv", exportV2); !res.Unchanged {
		t.Errorf("re-import stored a new version %s", res.Info.NUID)
	}
}

// A snapshot hashed with another key would decline every client: it is refused, logged,
// and the index in use keeps answering.
func TestRefusesASnapshotMadeWithAnotherKey(t *testing.T) {
	r := newRig(t)
	r.start(nil)
	r.importCSV(gatewayKey, "v1.csv", exportV1)
	r.verdictBecomes(clientX, contracts.Approved, policy.ReasonApproved)

	wrong := r.importCSV(otherKey, "v2.csv", exportV1+"9997654323,loan,pre_approved,400000,B,2099-12-31\n")
	r.logs.waitFor(t, `"level":"error"`, "pre-approval snapshot refused", wrong.Info.NUID, "another phone-hashing key")
	// Served from the wrong snapshot, X's hash would miss and X be declined.
	r.expect(clientX, contracts.Approved, policy.ReasonApproved)

	// The next good import is served.
	r.importCSV(gatewayKey, "v3.csv", exportV2)
	r.verdictBecomes(clientX, contracts.Declined, policy.ReasonNoPreapproval)
}

// A replica that cannot load a first snapshot is not ready and does not consume; it does
// not seed over the operator's import either. It serves the first good import.
func TestNotReadyUntilAFirstSnapshotLoads(t *testing.T) {
	r := newRig(t)
	wrong := r.importCSV(otherKey, "v1.csv", exportV1)
	addr := natstest.FreeAddr(t)
	r.start(map[string]string{"HEALTH_ADDR": addr})
	r.logs.waitFor(t, "pre-approval snapshot refused", wrong.Info.NUID)
	natstest.Eventually(t, 10*time.Second, func() error {
		code, body, err := get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no pre-approval snapshot loaded yet") {
			t.Fatalf("/readyz = %d %s before any snapshot loaded", code, body)
		}
		return nil
	})
	if _, err := r.obs.GetInfo(context.Background(), contracts.PreapprovalsSeedObject); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("a replica seeded a store that held an import: %v", err)
	}
	id := r.request(clientX) // waits: nothing consumes it yet
	// The consumer is provisioned; a replica consuming it would hold pull requests open.
	c, err := r.js.Consumer(context.Background(), contracts.StreamLoan, contracts.ConsumerScoring)
	if err != nil {
		t.Fatal(err)
	}
	if info := c.CachedInfo(); info.NumWaiting != 0 || info.Delivered.Consumer != 0 {
		t.Fatalf("scoring consumes with no snapshot loaded: %d pull requests waiting, %d delivered", info.NumWaiting, info.Delivered.Consumer)
	}

	r.importCSV(gatewayKey, "v2.csv", exportV1)
	natstest.Eventually(t, 20*time.Second, func() error {
		if code, body, err := get("http://" + addr + "/readyz"); err != nil || code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %s %v", code, body, err)
		}
		return nil
	})
	natstest.Eventually(t, 20*time.Second, func() error {
		r.readScored()
		if s := r.scored[id]; s == nil || s.Verdict != contracts.Approved {
			return fmt.Errorf("search made before the first snapshot: %+v", s)
		}
		return nil
	})
}

// A request no attempt can process (its phone_hash is not hex, so the contracts would not
// even publish it) is dead-lettered with its reason, and its search is finished as
// rejected instead of waiting for its deadline.
func TestPoisonRequestIsDeadLetteredAndItsSearchFinished(t *testing.T) {
	r := newRig(t)
	r.start(nil)
	r.expect("9330445040", contracts.Approved, policy.ReasonApproved) // consuming

	now := time.Now().UTC()
	req, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("ab", 32), PhoneMasked: "+7999***0000",
		ProductType: contracts.ProductLoan, RequestedAt: now, Deadline: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := natstest.Context(t, time.Minute)
	if _, err := r.store.CreatePending(ctx, contracts.NewSearch(*req, "")); err != nil {
		t.Fatal(err)
	}
	poison := *req
	poison.PhoneHash = "not-a-hash"
	data, _ := json.Marshal(poison)
	msg := &nats.Msg{Subject: contracts.SubjectRequested, Data: data, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderSearchID, req.SearchID)
	if _, err := r.js.PublishMsg(ctx, msg, jetstream.WithMsgID(contracts.RequestMsgID(*req, 0))); err != nil {
		t.Fatal(err)
	}

	natstest.Eventually(t, 20*time.Second, func() error {
		s, _, err := r.store.Get(ctx, req.SearchID)
		if err != nil {
			return err
		}
		if s.Status() != contracts.Done {
			return errors.New("search still pending")
		}
		if s.Decision() != contracts.Rejected || !slices.Equal(s.Reasons, []string{contracts.ReasonDeadLetter}) {
			t.Fatalf("search finished as %s %v", s.Decision(), s.Reasons)
		}
		return nil
	})
	dlq, err := r.js.Stream(ctx, contracts.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlq.GetLastMsgForSubject(ctx, contracts.SubjectDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	var dl contracts.DeadLetter
	if err := json.Unmarshal(m.Data, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.SearchID != req.SearchID || dl.Consumer != contracts.ConsumerScoring || !strings.Contains(dl.Reason, "phone_hash") {
		t.Fatalf("dead letter %+v", dl)
	}
	r.readScored()
	if s := r.scored[req.SearchID]; s != nil {
		t.Fatalf("the poison request was scored: %+v", s)
	}
}

func get(url string) (int, string, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, string(body), err
}

// While the store holds no import, replicas serve the seed, PREAPPROVALS_FILE, each building
// it for itself and writing nothing: scoring may read the store and no more. A "seed" object
// an earlier release wrote (here with another key) is neither served nor touched.
func TestServesTheSeedWithoutWritingIt(t *testing.T) {
	r := newRig(t)
	other, err := phone.NewHasher([]byte(otherKey))
	if err != nil {
		t.Fatal(err)
	}
	old, err := snapshotstore.Import(natstest.Context(t, time.Minute), r.obs, contracts.PreapprovalsSeedObject,
		snapshotstore.BytesSource("old-demo.csv", []byte(exportV2)), snapshotstore.Options{Hasher: other})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bank.csv")
	if err := os.WriteFile(file, []byte(exportV1), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start(map[string]string{"PREAPPROVALS_FILE": file})
	r.start(map[string]string{"PREAPPROVALS_FILE": file}) // a second replica, starting at once
	r.verdictBecomes(clientX, contracts.Approved, policy.ReasonApproved)
	r.expect(clientZ, contracts.Declined, policy.ReasonNoPreapproval) // only in the old seed object
	r.logs.waitFor(t, "serving the seed", "bank.csv")
	info, err := r.obs.GetInfo(context.Background(), contracts.PreapprovalsSeedObject)
	if err != nil || info.NUID != old.Info.NUID {
		t.Fatalf("the old seed object was replaced: %+v, %v", info, err)
	}
	if _, err := r.obs.GetInfo(context.Background(), contracts.PreapprovalsObject); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("serving the seed wrote the import's object: %v", err)
	}
}

// Configuration that can never work stops the service at start-up, with the reason.
func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"missing seed file", map[string]string{"PREAPPROVALS_FILE": filepath.Join(dir, "none.csv")}, "no such file"},
		{"seed without header", map[string]string{"PREAPPROVALS_FILE": write("nohdr.csv", "9330445040,loan,pre_approved,1,A,2099-12-31\n")}, "bad header"},
		{"seed without rows", map[string]string{"PREAPPROVALS_FILE": write("empty.csv", preapproval.Header+"\n")}, "no rows after the header"},
		{"broken policy", map[string]string{"POLICY_FILE": write("policy.json", `{"version": 2}`)}, "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"PHONE_HASH_KEY": gatewayKey}
			for k, v := range tt.env {
				vars[k] = v
			}
			cfg, err := scoring.LoadConfig(func(k string) string { return vars[k] })
			if err != nil {
				t.Fatal(err)
			}
			// No broker at all: the checks come first.
			err = scoring.Run(context.Background(), cfg, scoring.Deps{Log: zerolog.Nop()})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

// Test phones (TEST_PHONES) end as their file says, whatever the pre-approvals hold, and
// their scores say they are tests; /readyz says which snapshot is in force and the backlog.
func TestTestPhonesHaveFixedOutcomes(t *testing.T) {
	r := newRig(t)
	file := filepath.Join(t.TempDir(), "test-phones.json")
	if err := os.WriteFile(file, testphones.Demo(), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := natstest.FreeAddr(t)
	r.start(map[string]string{"TEST_PHONES": file, "HEALTH_ADDR": addr})

	never := r.request("+79000000004") // the deadline phone: scored never
	if s := r.score("+7 900 000-00-01"); s.Verdict != contracts.Approved || s.Grade != "A" || !s.Request.Test {
		t.Fatalf("approved test phone scored %+v", s)
	}
	if s := r.score("89000000002"); s.Verdict != contracts.Declined || !slices.Equal(s.Reasons, []string{scoring.ReasonTestPhone}) || !s.Request.Test {
		t.Fatalf("rejected test phone scored %+v", s)
	}
	if s := r.score("9000000005"); s.Verdict != contracts.Approved || s.Kind != contracts.FullApproved {
		t.Fatalf("full-approved test phone scored %+v", s)
	}
	delayed := r.score("9000000003")
	if took := delayed.ScoredAt.Sub(delayed.Request.RequestedAt); delayed.Verdict != contracts.Approved || took < 3*time.Second {
		t.Fatalf("delayed test phone scored %+v after %s, want approved after 3s", delayed, took)
	}
	// Its request handled (acknowledged, not redelivered), and nothing published for it. The
	// delayed phone's acknowledgement follows its verdict, so wait for the consumer to settle.
	natstest.Eventually(t, 5*time.Second, func() error {
		cons, err := r.js.Consumer(context.Background(), contracts.StreamLoan, contracts.ConsumerScoring)
		if err != nil {
			return err
		}
		if info := cons.CachedInfo(); info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("the deadline phone's request is not simply acknowledged: pending %d, ack pending %d, redelivered %d",
				info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
	r.readScored()
	if s := r.scored[never]; s != nil {
		t.Fatalf("the deadline phone was scored: %+v", s)
	}
	// Not a test phone: the pre-approvals decide, as ever.
	r.expect("9330445040", contracts.Approved, policy.ReasonApproved)

	code, body, err := get("http://" + addr + "/readyz")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/readyz = %d %s %v", code, body, err)
	}
	for _, want := range []string{`"name": "pre-approvals"`, "entries, stored", `"name": "consumer scoring"`, "backlog 0 waiting"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz does not say %q:\n%s", want, body)
		}
	}
}

// A rotation of the phone-hash key: scoring, given the new key and the earlier one, serves a
// snapshot made with either; a request hashed under the new key carries the phone's hash
// under the earlier one, which the earlier snapshot is looked up by; once the import under
// the new key is in, the new hash is. A request hashed under a key the snapshot is not made
// with, with no hash under that key, is not decided from it (no client is declined for a
// rotation's steps out of order): it is tried again, and the log says why.
func TestRotatedPhoneKeyLooksUpEitherSnapshot(t *testing.T) {
	r := newRig(t)
	r.importCSV(gatewayKey, "v1.csv", exportV1) // under the earlier key
	r.start(map[string]string{"PHONE_HASH_KEY": otherKey, "PHONE_HASH_KEYS_OLD": gatewayKey})
	natstest.Eventually(t, 20*time.Second, func() error {
		if s := r.scoreUnder(clientX, otherKey, gatewayKey); s.Verdict != contracts.Approved {
			return fmt.Errorf("under the earlier snapshot: %s %v", s.Verdict, s.Reasons)
		}
		return nil
	})
	r.importCSV(otherKey, "v1-new-key.csv", exportV1)
	natstest.Eventually(t, 20*time.Second, func() error {
		if s := r.scoreUnder(clientX, otherKey); s.Verdict != contracts.Approved {
			return fmt.Errorf("under the new snapshot, with no earlier hash: %s %v", s.Verdict, s.Reasons)
		}
		return nil
	})
	id := r.requestUnder(clientX, gatewayKey, otherKey+"-not-the-snapshots-key")
	r.logs.waitFor(t, "the pre-approval snapshot under", id)
	if r.readScored(); r.scored[id] != nil {
		t.Fatalf("decided without its pre-approval: %+v", r.scored[id])
	}
}
