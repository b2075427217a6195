package bus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
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
	pub := NewPublisher(js, 1)
	if err := EnsureStreams(context.Background(), js, 1); err != nil {
		t.Fatal(err)
	}

	inHand := make(chan struct{})
	var handled atomic.Int32
	handler := func(conn jetstream.JetStream, crash bool) Handler[contracts.LoanRequested] {
		return func(ctx context.Context, m *contracts.LoanRequested) error {
			if err := NewPublisher(conn, 1).Publish(ctx, contracts.SubjectScored, m.SearchID,
				contracts.MsgID(m.SearchID, contracts.StageScored), m); err != nil {
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
			Decode: contracts.DecodeLoanRequested, Handle: h, Replicas: 1, Log: zerolog.Nop()}
	}
	stopCrashing := runConsumer(t, crashingJS, newConsumer(handler(crashingJS, true)))
	req := request(t)
	if err := pub.Publish(context.Background(), contracts.SubjectRequested, req.SearchID,
		contracts.MsgID(req.SearchID, contracts.StageRequested), req); err != nil {
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
	pub := NewPublisher(js, 1)
	var attempts atomic.Int32
	finished := make(chan string, 4)
	runConsumer(t, js, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			attempts.Add(1)
			return Permanent(errors.New("policy file corrupt"))
		},
		OnDeadLetter: func(ctx context.Context, searchID, reason string) error {
			finished <- searchID + " " + reason
			return nil
		},
		Replicas: 1, Log: zerolog.Nop(),
	})
	req := request(t)
	if err := pub.Publish(context.Background(), contracts.SubjectRequested, req.SearchID, "a", req); err != nil {
		t.Fatal(err)
	}
	// A payload that does not decode is dead-lettered too, against its header's search id.
	if err := pub.Publish(context.Background(), contracts.SubjectRequested, "0000", "b", map[string]int{"x": 1}); err != nil {
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

// The broker restarts and its memory stream, with the consumer, is gone. The consumer
// declares both again and handles what is published afterwards.
func TestConsumerSurvivesBrokerRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	pub := NewPublisher(js, 1)
	seen := make(chan string, 8)
	runConsumer(t, js, &Consumer[contracts.LoanRequested]{
		Name: "scoring", Subject: contracts.SubjectRequested, Decode: contracts.DecodeLoanRequested,
		Handle: func(ctx context.Context, m *contracts.LoanRequested) error {
			seen <- m.SearchID
			return nil
		},
		Replicas: 1, Log: zerolog.New(zerolog.NewTestWriter(t)),
	})
	first := request(t)
	if err := pub.Publish(context.Background(), contracts.SubjectRequested, first.SearchID, "1", first); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != first.SearchID {
		t.Fatalf("got %s", got)
	}
	srv.Restart()
	second := request(t)
	natstest.Eventually(t, 20*time.Second, func() error {
		// Until the client reconnects, a publish fails; the gateway's sweeper is what
		// repeats it in production.
		return pub.Publish(context.Background(), contracts.SubjectRequested, second.SearchID, "2", second)
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
