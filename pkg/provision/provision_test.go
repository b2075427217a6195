package provision_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
	"github.com/demobank/yacredits/pkg/provision"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Each service checks what it uses with only the settings it knows; once the plan is
// applied every one of them finds everything as planned, and a second pass changes nothing.
func TestAppliedPlanIsWhatEveryServiceChecks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		js       func(t *testing.T) jetstream.JetStream
	}{
		{"one server", 1, func(t *testing.T) jetstream.JetStream {
			_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
			return js
		}},
		{"three-node cluster", 3, func(t *testing.T) jetstream.JetStream {
			c := natstest.RunCluster(t, 3)
			c.WaitForMetaLeader()
			_, js := natstest.JetStream(t, c.URLs())
			return js
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := tc.js(t)
			s := provision.Defaults(tc.replicas)
			ctx := natstest.Context(t, 60*time.Second)
			if err := provision.Check(ctx, js, provision.Plan(s)...); !errors.Is(err, bus.ErrNotProvisioned) {
				t.Fatalf("check before provisioning: %v", err)
			}
			var done []string
			natstest.Eventually(t, 30*time.Second, func() (err error) {
				done, err = provision.Apply(ctx, js, provision.Plan(s))
				return err
			})
			if len(done) == 0 {
				t.Fatal("the first pass reported no change")
			}
			known := provision.Settings{Replicas: tc.replicas}
			for name, items := range map[string][]provision.Item{
				"gateway":      provision.Gateway(provision.Settings{Replicas: tc.replicas, SearchRetention: s.SearchRetention}),
				"scoring":      provision.Scoring(known),
				"offers":       provision.Offers(provision.Settings{Replicas: tc.replicas, AuditRetention: s.AuditRetention}),
				"conversions":  provision.ConversionsService(provision.Settings{Replicas: tc.replicas, ConversionsRetention: s.ConversionsRetention, DeliveryAckWait: s.DeliveryAckWait}),
				"audit writer": {provision.Audit(provision.Settings{})},
			} {
				if err := provision.Check(ctx, js, items...); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			again, err := provision.Apply(ctx, js, provision.Plan(s))
			if err != nil || len(again) > 0 {
				t.Fatalf("a second pass changed %v (%v)", again, err)
			}
			// The searches bucket is read from its leader: the services bind to it.
			if _, err := bus.BindLeaderRead(ctx, js, contracts.BucketSearches); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// What someone changed by hand, or through the routes a stream's configuration opens
// (sources, republish, a shorter age, another consumer setting), the services' check names
// and the next pass of the provisioner undoes.
func TestCheckNamesWhatDiffersAndApplyUndoesIt(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	s := provision.Defaults(1)
	if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
		t.Fatal(err)
	}
	searches, err := js.Stream(ctx, "KV_"+contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	cfg := searches.CachedInfo().Config
	cfg.Sources = []*jetstream.StreamSource{{Name: "OBJ_" + contracts.BucketPreapprovals}}
	cfg.RePublish = &jetstream.RePublish{Source: ">", Destination: "copy.>"}
	cfg.MaxAge = 3 * time.Minute
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	work := provision.Work(contracts.ConsumerOffers, contracts.SubjectScored)[0]
	changed := work.Consumer
	changed.MaxDeliver = 50
	if _, err := js.UpdateConsumer(ctx, work.On, changed); err != nil {
		t.Fatal(err)
	}
	// What reaches other streams, or changes how a consumer works, blocks the services; an
	// age is drift, which they report and work on.
	err = provision.Check(ctx, js, provision.Plan(s)...)
	for _, want := range []string{"bucket searches: sources: have 1, want none", "bucket searches: republish: have > → copy.>",
		"consumer LOAN/offers: max_deliver: have 50, want 5"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check says %v\nwant it to name %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "max_age") {
		t.Errorf("check blocks on an age: %v", err)
	}
	rep, err := provision.Inspect(ctx, js, provision.Plan(s)...)
	if err != nil || strings.Join(rep.Drifted, "\n") != "bucket searches: max_age: have 3m0s, want 24h0m0s" {
		t.Errorf("drift %q (%v)", rep.Drifted, err)
	}
	done, err := provision.Apply(ctx, js, provision.Plan(s))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(done, "\n") != "updated bucket searches\nupdated consumer LOAN/offers" {
		t.Fatalf("changes: %q", done)
	}
	if err := provision.Check(ctx, js, provision.Plan(s)...); err != nil {
		t.Fatal(err)
	}
}

// The features a stream is given by a flag change what a writer may do or what a write
// means. Set on the audit trail and on the searches bucket by whoever can update a stream,
// each blocks the services; a pass turns back those the server lets it, and the one it
// never does (per-message TTLs, which cannot be turned off) keeps blocking until an
// administrator makes the stream again.
func TestCheckNamesStreamFeaturesAndApplyUndoesThem(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	plan := provision.Plan(provision.Defaults(1))
	if _, err := provision.Apply(ctx, js, plan); err != nil {
		t.Fatal(err)
	}
	update := func(name string, change func(*jetstream.StreamConfig)) {
		t.Helper()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		change(&cfg)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	update(contracts.StreamAudit, func(c *jetstream.StreamConfig) {
		c.MaxConsumers, c.AllowAtomicPublish, c.AllowBatchPublish, c.MirrorDirect = 1, true, true, true
	})
	update("KV_"+contracts.BucketSearches, func(c *jetstream.StreamConfig) { c.MaxConsumers = 2 })
	err := provision.Check(ctx, js, plan...)
	for _, want := range []string{"stream AUDIT: max_consumers: have 1, want -1", "stream AUDIT: allow_atomic: have true, want false",
		"stream AUDIT: allow_batched: have true, want false", "stream AUDIT: mirror_direct: have true, want false",
		"bucket searches: max_consumers: have 2, want -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check says %v\nwant it to name %q", err, want)
		}
	}
	if _, err := provision.Apply(ctx, js, plan); err != nil {
		t.Fatal(err)
	}
	if err := provision.Check(ctx, js, plan...); err != nil {
		t.Fatalf("after a pass: %v", err)
	}

	update("KV_"+contracts.BucketSearches, func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true })
	if _, err := provision.Apply(ctx, js, plan); err == nil {
		t.Error("a pass turned per-message TTLs off, which the server refuses: the test no longer shows the case")
	}
	if err := provision.Check(ctx, js, plan...); err == nil || !strings.Contains(err.Error(), "bucket searches: allow_msg_ttl: have true, want false") {
		t.Errorf("check says %v, want it to block on allow_msg_ttl", err)
	}
}

// The provisioner never shortens the audit trail, whatever AUDIT_RETENTION it is given:
// that deletes decisions at once, and is an act of its own (docs/operating.md). A longer
// retention applies. (The conversions bucket, kept by the same rule, is checked alongside.)
func TestApplyNeverShortensTheAuditTrail(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	for _, step := range []struct{ set, keeps time.Duration }{{400, 400}, {30, 400}, {500, 500}} {
		s := provision.Defaults(1)
		s.AuditRetention = step.set * 24 * time.Hour
		if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
			t.Fatal(err)
		}
		for name, item := range map[string]provision.Item{"audit trail": provision.Audit(s), "conversions": provision.Conversions(s)} {
			if rep, err := provision.Inspect(ctx, js, item); err != nil || len(rep.Blocking)+len(rep.Drifted) > 0 {
				t.Fatalf("%s after a pass with %d days: %+v, %v", name, step.set, rep, err)
			}
		}
		st, err := js.Stream(ctx, contracts.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxAge; got != step.keeps*24*time.Hour {
			t.Fatalf("given %d days, the audit trail keeps %v, want %d days", step.set, got, step.keeps)
		}
	}
}

// A memory stream lost with its broker, and its consumers, are made again by the next pass.
func TestApplyRemakesWhatABrokerRestartLost(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	s := provision.Defaults(1)
	if _, err := provision.Apply(natstest.Context(t, 10*time.Second), js, provision.Plan(s)); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	var done []string // over every pass until one succeeds
	natstest.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := provision.Apply(ctx, js, provision.Plan(s))
		done = append(done, d...)
		return err
	})
	got := strings.Join(done, "\n")
	for _, want := range []string{"created stream LOAN", "created stream LOAN_ADVISORIES", "created consumer LOAN/scoring",
		"created consumer LOAN_ADVISORIES/offers-max-deliveries"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes after the restart:\n%s\nwant %q", got, want)
		}
	}
	if strings.Contains(got, "bucket searches") {
		t.Errorf("a file bucket was made again after a restart:\n%s", got)
	}
}

// A provisioner run with fewer replicas than the streams have (NATS_REPLICAS unset on a
// laptop pointed at production) scales nothing down: that is an administrator's act.
func TestApplyNeverLowersReplicas(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	c.WaitForMetaLeader()
	_, js := natstest.JetStream(t, c.URLs())
	natstest.Eventually(t, 30*time.Second, func() error {
		_, err := provision.Apply(natstest.Context(t, 20*time.Second), js, provision.Plan(provision.Defaults(3)))
		return err
	})
	ctx := natstest.Context(t, 30*time.Second)
	if _, err := provision.Apply(ctx, js, provision.Plan(provision.Defaults(1))); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{contracts.StreamAudit, "KV_" + contracts.BucketConversions, "OBJ_" + contracts.BucketPreapprovals, contracts.StreamLoan} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("%s has %d replicas after a pass with NATS_REPLICAS=1, want 3", name, r)
		}
	}
}

// A consumer set in a way JetStream does not let change (its deliver policy) is made again
// as planned, rather than left unready for good.
func TestApplyRemakesAConsumerItCannotUpdate(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	s := provision.Defaults(1)
	if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
		t.Fatal(err)
	}
	audit := provision.AuditConsumer()
	if err := js.DeleteConsumer(ctx, audit.On, audit.Consumer.Durable); err != nil {
		t.Fatal(err)
	}
	other := audit.Consumer
	other.DeliverPolicy = jetstream.DeliverNewPolicy
	if _, err := js.CreateConsumer(ctx, audit.On, other); err != nil {
		t.Fatal(err)
	}
	if err := provision.Check(ctx, js, audit); err == nil || !strings.Contains(err.Error(), "deliver_policy") {
		t.Fatalf("check of a consumer delivering new messages only: %v", err)
	}
	done, err := provision.Apply(ctx, js, provision.Plan(s))
	if err != nil || strings.Join(done, "\n") != "replaced consumer KV_searches/audit" {
		t.Fatalf("changes %q, %v", done, err)
	}
	if err := provision.Check(ctx, js, provision.Plan(s)...); err != nil {
		t.Fatal(err)
	}
}

// Every file stream is bounded as planned, and the bounds add up to what the plan says a
// NATS server's max_file_store must allow.
func TestApplyBoundsEveryFileStream(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	s := provision.Defaults(1)
	if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, it := range provision.Plan(s) {
		if it.Kind == provision.Consumer {
			continue
		}
		st, err := js.Stream(ctx, it.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if cfg.MaxBytes <= 0 {
			t.Errorf("%s is unbounded", it.Name())
		}
		if cfg.Storage == jetstream.FileStorage {
			sum += cfg.MaxBytes
		}
	}
	if want := provision.FileBytes(s); sum != want || sum == 0 {
		t.Errorf("the file streams may hold %d bytes together, FileBytes says %d", sum, want)
	}
	audit, err := js.Stream(ctx, contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := audit.CachedInfo().Config; cfg.Discard != jetstream.DiscardNew || cfg.MaxBytes != s.AuditMaxBytes {
		t.Errorf("a full audit trail would drop decisions: discard %v, max_bytes %d", cfg.Discard, cfg.MaxBytes)
	}
}

// A pass never lowers a bound under what a stream keeps (JetStream would drop the oldest
// searches at once), nor that of the audit trail at all; it raises any, and lowers one
// with room to spare. A bound left is named as drift, for an administrator.
func TestApplyNeverLowersABoundUnderWhatIsKept(t *testing.T) {
	_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
	ctx := natstest.Context(t, 30*time.Second)
	s := provision.Defaults(1)
	s.SearchMaxBytes = 64 << 20
	if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, contracts.BucketSearches)
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 10<<10)
	for i := range 100 { // about 1MB kept
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	bound := func(stream string) int64 {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.MaxBytes
	}
	for _, step := range []struct {
		what                string
		search, audit, want int64 // the settings, and the searches' bound after the pass
		auditWant           int64
	}{
		{"the searches' bound under what they keep", 1 << 20, 3 << 30, 64 << 20, 3 << 30},
		{"the searches' bound with room to spare; the trail's lowered", 8 << 20, 1 << 30, 8 << 20, 3 << 30},
		{"both raised", 128 << 20, 4 << 30, 128 << 20, 4 << 30},
	} {
		s.SearchMaxBytes, s.AuditMaxBytes = step.search, step.audit
		if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
			t.Fatal(err)
		}
		if got := bound("KV_" + contracts.BucketSearches); got != step.want {
			t.Errorf("%s: the searches' bound is %d, want %d", step.what, got, step.want)
		}
		if got := bound(contracts.StreamAudit); got != step.auditWant {
			t.Errorf("%s: the trail's bound is %d, want %d", step.what, got, step.auditWant)
		}
		rep, err := provision.Inspect(ctx, js, provision.Searches(s), provision.Audit(s))
		if err != nil || len(rep.Blocking) > 0 {
			t.Fatalf("%s: %+v, %v", step.what, rep, err)
		}
		if left := step.want != step.search || step.auditWant != step.audit; left != (len(rep.Drifted) > 0) {
			t.Errorf("%s: drift named %q", step.what, rep.Drifted)
		}
	}
	if st, _ := js.Stream(ctx, "KV_"+contracts.BucketSearches); st.CachedInfo().State.Msgs != 100 {
		t.Errorf("a pass dropped searches: %d kept of 100", st.CachedInfo().State.Msgs)
	}
}

// An audit trail made before bounds (an upgrade) is bounded by a pass when it keeps well
// under the bound, and left alone, named as drift, when it keeps more: a bound under what it
// keeps would delete decisions at once.
func TestApplyBoundsAnUpgradedTrailWithRoom(t *testing.T) {
	for _, tc := range []struct {
		what    string
		bound   int64
		bounded bool
	}{
		{"room to spare", 64 << 20, true},
		{"keeping more than the bound allows", 512 << 10, false},
	} {
		t.Run(tc.what, func(t *testing.T) {
			_, js := natstest.JetStream(t, natstest.RunServer(t).ClientURL())
			ctx := natstest.Context(t, 30*time.Second)
			s := provision.Defaults(1)
			old := provision.Audit(s).Stream
			old.MaxBytes = -1
			if _, err := js.CreateStream(ctx, old); err != nil {
				t.Fatal(err)
			}
			for range 120 { // 480KiB kept
				if _, err := js.Publish(ctx, contracts.SubjectAudit, make([]byte, 4<<10)); err != nil {
					t.Fatal(err)
				}
			}
			s.AuditMaxBytes = tc.bound
			if _, err := provision.Apply(ctx, js, provision.Plan(s)); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, contracts.StreamAudit)
			if err != nil {
				t.Fatal(err)
			}
			info := st.CachedInfo()
			if got := info.Config.MaxBytes == tc.bound; got != tc.bounded || info.State.Msgs != 120 {
				t.Errorf("max_bytes %d (bound %d), %d of 120 batches kept", info.Config.MaxBytes, tc.bound, info.State.Msgs)
			}
		})
	}
}
