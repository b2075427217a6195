package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func request(t testing.TB) *contracts.LoanRequested {
	t.Helper()
	now := time.Now().UTC()
	r, err := contracts.NewLoanRequested(contracts.LoanRequested{
		SearchID: uuid.NewString(), PhoneHash: strings.Repeat("cd", 32), PhoneMasked: "+7933***5040",
		ProductType: contracts.ProductLoan, RequestedAt: now, Deadline: now.Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runConsumer runs c until the returned stop is called (or the test ends).
func runConsumer[T any](t *testing.T, js jetstream.JetStream, c *Consumer[T]) (stop func()) {
	t.Helper()
	// The streams and consumers are the provisioner's; here the test plays it.
	if err := provisionFor(context.Background(), js, c); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, js) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// provisionFor makes the streams and c's consumers as package provision would (which
// cannot be imported here: it imports bus), with c's own retry policy.
func provisionFor[T any](ctx context.Context, js jetstream.JetStream, c *Consumer[T]) error {
	if err := provisionStreams(ctx, js); err != nil {
		return err
	}
	r := c.Retry
	if r.MaxDeliver == 0 {
		r = DefaultRetry()
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, contracts.StreamLoan, WorkConsumer(c.Name, c.Subject, r)); err != nil {
		return err
	}
	_, err := js.CreateOrUpdateConsumer(ctx, contracts.StreamLoanAdvisories, AdvisoryConsumer(c.Name))
	return err
}

func provisionStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range []jetstream.StreamConfig{LoanStream(1), AdvisoryStream(1), DeadLetterStream(1)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return err
		}
	}
	return nil
}

func subjectCount(t *testing.T, js jetstream.JetStream, stream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// A replica dies with a message in hand, after publishing its result and before acking.
// Another replica gets the message and handles it; the repeated publish is de-duplicated,
// so exactly one result exists.
func TestCrashMidMessageIsRedeliveredAndNotDoubled(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	crashingConn, crashingJS := natstest.JetStream(t, srv.ClientURL())
	pub := NewPublisher(js)
	if err := provisionStreams(context.Background(), js); err != nil {
		t.Fatal(err)
	}

	inHand := make(chan struct{})
	var handled atomic.Int32
	handler := func(conn jetstream.JetStream, crash bool) Handler[contracts.LoanRequested] {
		return func(ctx context.Context, m *contracts.LoanRequested) error {
			if _, err := NewPublisher(conn).Publish(ctx, contracts.SubjectScored, m.SearchID,
				contracts.ScoredMsgID(MessageID(ctx)), m); err != nil {
				return err
			}
			if crash {
				close(inHand)
				<-ctx.Done() // never acks: the process is about to die
				return ctx.Err()
			}
			handled.Add(1)
			return nil
		}
	}
	newConsumer := func(h Handler[contracts.LoanRequested]) *Consumer[contracts.LoanRequested] {
		return &Consumer[contracts.LoanRequested]{Name: "scoring", Subject: contracts.SubjectRequested,
			Decode: contracts.DecodeLoanRequested, Handle: h, Log: zerolog.Nop()}
	}
	stopCrashing := runConsumer(t, crashingJS, newConsumer(handler(crashingJS, true)))
	req := request(t)
	if _, err := pub.Publish(context.Background(), contracts.SubjectRequested, req.SearchID,
		contracts.RequestMsgID(*req, 0), req); err != nil {
		t.Fatal(err)
	}
	<-inHand
	crashingConn.Close() // the crash: connection gone, no ack, no drain
	stopCrashing()

	runConsumer(t, js, newConsumer(handler(js, false)))
	natstest.Eventually(t, 20*time.Second, func() error {
		if handled.Load() != 1 {
			return errors.New("not redelivered yet")
		}
		return nil
	})
	if n := subjectCount(t, js, contracts.StreamLoan, contracts.SubjectScored); n != 1 {
		t.Fatalf("%d results for one message, want 1", n)
	}
}

// A message no attempt can process goes to the dead-letter stream with its reason, its
// search is finished through OnDeadLetter, and it is not delivered again.
func TestDeadLetter(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	pub := NewPublisher(js)
	var attempts atomic.Int32
	finished := make(chan string, 4)
	runConsumer(t, js, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			attempts.Add(1)
			return Permanent(errors.New("policy file corrupt"))
		},
		OnDeadLetter: func(ctx context.Context, searchID string, _ *contracts.LoanRequested, reason string) error {
			finished <- searchID + " " + reason
			return nil
		},
		Log: zerolog.Nop(),
	})
	req := request(t)
	if _, err := pub.Publish(context.Background(), contracts.SubjectRequested, req.SearchID, "a", req); err != nil {
		t.Fatal(err)
	}
	// A payload that does not decode is dead-lettered too, against its header's search id.
	if _, err := pub.Publish(context.Background(), contracts.SubjectRequested, "0000", "b", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{<-finished: true, <-finished: true}
	if !got[req.SearchID+" "+contracts.ReasonDeadLetter] || !got["0000 "+contracts.ReasonDeadLetter] {
		t.Fatalf("finished = %v", got)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if n := subjectCount(t, js, contracts.StreamDeadLetter, contracts.SubjectDeadLetter); n != 2 {
			return errors.New("dead letters not stored yet")
		}
		return nil
	})
	s, _ := js.Stream(context.Background(), contracts.StreamDeadLetter)
	reasons := map[string]string{}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var dl contracts.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil || dl.Consumer != "scoring" {
			t.Fatalf("dead letter = %+v, %v", dl, err)
		}
		reasons[dl.SearchID] = dl.Reason
	}
	if !strings.Contains(reasons[req.SearchID], "policy file corrupt") || !strings.Contains(reasons["0000"], "invalid message") {
		t.Fatalf("dead-letter reasons = %v", reasons)
	}
	if attempts.Load() != 1 {
		t.Fatalf("a permanent failure was attempted %d times", attempts.Load())
	}
}

// The broker restarts and its memory stream, with the consumer, is gone. Once the
// provisioner has made both again, the consumer binds to them and handles what is
// published afterwards.
func TestConsumerSurvivesBrokerRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	pub := NewPublisher(js)
	seen := make(chan string, 8)
	c := &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			seen <- m.SearchID
			return nil
		},
		Log: zerolog.New(zerolog.NewTestWriter(t)),
	}
	runConsumer(t, js, c)
	first := request(t)
	if _, err := pub.Publish(context.Background(), contracts.SubjectRequested, first.SearchID, "1", first); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != first.SearchID {
		t.Fatalf("got %s", got)
	}
	srv.Restart()
	second := request(t)
	natstest.Eventually(t, 20*time.Second, func() error {
		// Until the client reconnects and the provisioner has made the stream again, a
		// publish fails; the gateway's sweeper is what repeats it in production.
		if err := provisionFor(context.Background(), js, c); err != nil {
			return err
		}
		_, err := pub.Publish(context.Background(), contracts.SubjectRequested, second.SearchID, "2", second)
		return err
	})
	select {
	case got := <-seen:
		if got != second.SearchID {
			t.Fatalf("got %s, want %s", got, second.SearchID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not come back after the broker restart")
	}
}

// fastRetry redelivers within a test's patience: two deliveries 150 ms apart.
func fastRetry() Retry {
	return Retry{BackOff: []time.Duration{150 * time.Millisecond, 150 * time.Millisecond}, AckWait: 150 * time.Millisecond,
		MaxDeliver: 2, HandlerTimeout: 100 * time.Millisecond}
}

// deadLetters reads every dead letter stored so far.
func deadLetters(t *testing.T, js jetstream.JetStream) []contracts.DeadLetter {
	t.Helper()
	ctx := natstest.Context(t, 5*time.Second)
	s, err := js.Stream(ctx, contracts.StreamDeadLetter)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []contracts.DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		dl, err := contracts.DecodeDeadLetter(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *dl)
	}
	return out
}

// A handler that panics has its message dead-lettered with the panic in the reason; the
// process (this test binary) lives on.
func TestPanicIsDeadLetteredNotFatal(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	finished := make(chan string, 1)
	runConsumer(t, js, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			var missing map[string]*int
			return errors.New(strconvItoa(*missing["x"])) // a nil dereference
		},
		OnDeadLetter: func(ctx context.Context, searchID string, m *contracts.LoanRequested, reason string) error {
			finished <- searchID
			return nil
		},
		Log: zerolog.Nop(),
	})
	req := request(t)
	if _, err := NewPublisher(js).Publish(context.Background(), contracts.SubjectRequested, req.SearchID, "p", req); err != nil {
		t.Fatal(err)
	}
	if got := <-finished; got != req.SearchID {
		t.Fatalf("finished %s", got)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		for _, dl := range deadLetters(t, js) {
			if dl.SearchID == req.SearchID && strings.Contains(dl.Reason, "panicked") && strings.Contains(dl.Reason, "bus.TestPanic") {
				return nil
			}
		}
		return errors.New("no dead letter naming the panic")
	})
}

func strconvItoa(n int) string { return string(rune('0' + n)) }

// The last delivery times out: its handler's context has expired, and the dead letter is
// still published and its search still finished, each with a deadline of its own.
func TestLastDeliveryTimeoutIsDeadLettered(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	finished := make(chan error, 1)
	runConsumer(t, js, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested, Retry: fastRetry(),
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			<-ctx.Done() // slower than the handler timeout, every time
			return ctx.Err()
		},
		OnDeadLetter: func(ctx context.Context, searchID string, m *contracts.LoanRequested, reason string) error {
			finished <- ctx.Err() // a live context: the search can still be written
			return nil
		},
		Log: zerolog.Nop(),
	})
	req := request(t)
	if _, err := NewPublisher(js).Publish(context.Background(), contracts.SubjectRequested, req.SearchID, "t", req); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("the dead-lettered search was finished with an expired context: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a message whose last delivery timed out was never dead-lettered")
	}
	if dls := deadLetters(t, js); len(dls) != 1 || dls[0].Deliveries != 2 {
		t.Fatalf("dead letters = %+v", dls)
	}
}

// The replica holding a message's last delivery dies with it. Another replica, started only
// afterwards, dead-letters it from JetStream's max-deliveries advisory and finishes its
// search.
func TestCrashOnLastDeliveryIsDeadLettered(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	deadConn, deadJS := natstest.JetStream(t, srv.ClientURL())
	var attempts atomic.Int32
	dying := make(chan struct{})
	stopDead := runConsumer(t, deadJS, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested, Retry: fastRetry(),
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			if attempts.Add(1) < 2 {
				return errors.New("not yet")
			}
			close(dying)
			<-ctx.Done()
			return ctx.Err()
		},
		Log: zerolog.Nop(),
	})
	req := request(t)
	if _, err := NewPublisher(js).Publish(context.Background(), contracts.SubjectRequested, req.SearchID,
		contracts.RequestMsgID(*req, 0), req); err != nil {
		t.Fatal(err)
	}
	<-dying
	deadConn.Close() // the crash: no ack, no dead letter, no terminate
	stopDead()
	finished := make(chan *contracts.LoanRequested, 1)
	runConsumer(t, js, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested, Retry: fastRetry(),
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error { return nil },
		OnDeadLetter: func(ctx context.Context, searchID string, m *contracts.LoanRequested, reason string) error {
			finished <- m
			return nil
		},
		Log: zerolog.Nop(),
	})
	select {
	case m := <-finished:
		if m == nil || m.SearchID != req.SearchID {
			t.Fatalf("finished %+v", m)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a message whose replica died on its last delivery was never dead-lettered")
	}
	dls := deadLetters(t, js)
	if len(dls) != 1 || !strings.Contains(dls[0].Reason, "delivery limit") || dls[0].MsgID != contracts.RequestMsgID(*req, 0) {
		t.Fatalf("dead letters = %+v", dls)
	}
}

// After a broker restart the memory stream numbers its messages from 1 again; a dead
// letter of the new message 1 is kept, not dropped as a duplicate of the old one's.
func TestDeadLetterIDsAreUniqueAcrossRestarts(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	c := &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error { return nil },
		Log:    zerolog.Nop(),
	}
	runConsumer(t, js, c)
	pub := NewPublisher(js)
	poison := func(id string) {
		t.Helper()
		natstest.Eventually(t, 20*time.Second, func() error {
			// No de-duplication id of its own: the case a stream sequence alone would repeat.
			msg := &nats.Msg{Subject: contracts.SubjectRequested, Data: []byte("{not json"), Header: nats.Header{HeaderSearchID: []string{id}}}
			if err := provisionFor(context.Background(), js, c); err != nil {
				return err // the provisioner's part, after a restart
			}
			_, err := pub.js.PublishMsg(context.Background(), msg)
			return err
		})
	}
	first := uuid.NewString()
	poison(first)
	natstest.Eventually(t, 10*time.Second, func() error {
		if len(deadLetters(t, js)) != 1 {
			return errors.New("first dead letter not stored")
		}
		return nil
	})
	srv.Restart()
	second := uuid.NewString()
	poison(second)
	natstest.Eventually(t, 20*time.Second, func() error {
		dls := deadLetters(t, js)
		if len(dls) != 2 {
			return fmt.Errorf("%d dead letters, want 2", len(dls))
		}
		if dls[0].StreamSeq != dls[1].StreamSeq || dls[1].SearchID != second {
			return fmt.Errorf("dead letters %+v: want the same sequence twice", dls)
		}
		return nil
	})
}

func TestRetryPolicyIsValidated(t *testing.T) {
	if err := DefaultRetry().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]Retry{
		"empty back-off":        {AckWait: time.Second, MaxDeliver: 3, HandlerTimeout: time.Second},
		"timeout past back-off": {BackOff: []time.Duration{time.Second}, MaxDeliver: 3, HandlerTimeout: 2 * time.Second},
		"back-off past window":  {BackOff: []time.Duration{time.Minute, 2 * time.Minute}, MaxDeliver: 3, HandlerTimeout: time.Second},
	} {
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// An empty policy given to a consumer is refused at Run, never a panic at the first failure.
	c := &Consumer[contracts.LoanRequested]{Name: "x", Retry: Retry{MaxDeliver: 3}}
	if err := c.Run(context.Background(), nil); err == nil {
		t.Fatal("a consumer ran with an empty back-off")
	}
}
