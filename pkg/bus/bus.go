// Package bus is the services' typed view of NATS JetStream: connecting, the
// configurations of the streams the contracts name (which package provision provisions and
// the services only bind to), publishing a message with its de-duplication id and trace
// context, and consuming a durable consumer through a typed handler wrapped in small
// layers (recover, time out, dead-letter, acknowledge) whose result becomes an ack, a
// delayed redelivery or a dead letter. Retry policy lives on the consumer (Retry); nothing
// here loops over a failing message.
package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/contracts"
)

// Connect dials NATS and keeps reconnecting for as long as the process lives: neither a
// broker that is not up yet nor a broker restart needs a service restart. It returns at
// once with a connection that may still be connecting; calls made meanwhile fail and are
// retried by their callers, and readiness says not ready.
func Connect(ctx context.Context, cfg config.NATS, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(cfg.ConnectTimeout),
		// A silent broker (a partition) is noticed in seconds, not the default two minutes.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
	if cfg.User != "" {
		// Replies come to an inbox of the user's own, the only one its NATS user may read.
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password), nats.CustomInboxPrefix("_INBOX_"+cfg.User))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", cfg.URL, err)
	}
	return nc, nil
}

// WithJetStream reads the NATS_* variables, connects as name and calls fn, closing the
// connection after: the shape of every operators' tool.
func WithJetStream(ctx context.Context, getenv config.Getenv, name string, fn func(jetstream.JetStream, config.NATS) error) error {
	r := config.NewReader(getenv)
	cfg := config.ReadNATS(r)
	if err := r.Err(); err != nil {
		return err
	}
	nc, err := Connect(ctx, cfg, name)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return fn(js, cfg)
}

// LoanStream is the configuration of the stream of loan.v1 work messages: a work queue in
// memory. A message leaves it once its consumer has acknowledged it, so its size is the
// work in flight; when that reaches MaxBytes (the consumers are down) new publishes are
// refused, which the gateway turns into 503, rather than old unfinished work being dropped.
// Nothing here needs a disk sync: a search answered 200 has a durable record from which its
// messages are derived again (the gateway's sweeper does so after a broker restart).
func LoanStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        contracts.StreamLoan,
		Description: "loan.v1 work in flight (re-derivable from the searches bucket)",
		Subjects:    []string{contracts.SubjectRequested, contracts.SubjectScored},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      15 * time.Minute,
		MaxBytes:    512 << 20,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	}
}

// maxDeliveriesSubject is where JetStream announces a message of stream that reached its
// consumer's delivery limit without being acknowledged.
func maxDeliveriesSubject(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// AdvisoryStream keeps the max-deliveries advisories of the LOAN stream's consumers. They
// are published on core NATS, fire and forget; kept in a stream, one is handled even if no
// replica listened at the moment it was sent. Memory: they concern messages of a memory
// stream and are as fleeting.
func AdvisoryStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        contracts.StreamLoanAdvisories,
		Description: "LOAN messages that reached their delivery limit",
		Subjects:    []string{maxDeliveriesSubject(contracts.StreamLoan, "*")},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      time.Hour,
		MaxBytes:    16 << 20,
		Replicas:    replicas,
	}
}

// DeadLetterStream is the configuration of the dead-letter stream: on disk, because it is
// what people read to find out why a search failed. Bounded like every file stream; full,
// it drops its oldest letters (discard old): the newest say what is failing now.
func DeadLetterStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        contracts.StreamDeadLetter,
		Description: "messages no delivery could process",
		Subjects:    []string{contracts.SubjectDeadLetter},
		Storage:     jetstream.FileStorage,
		MaxAge:      14 * 24 * time.Hour,
		MaxBytes:    256 << 20,
		Discard:     jetstream.DiscardOld,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	}
}

// WorkConsumer is the durable consumer configuration shared by the replicas of a service.
func WorkConsumer(name, subject string, r Retry) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.AckWait,
		MaxDeliver:    r.MaxDeliver,
		BackOff:       r.BackOff,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// AdvisoryConsumer is the durable consumer of a work consumer's max-deliveries advisories,
// shared by the replicas of its service.
func AdvisoryConsumer(work string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       work + "-max-deliveries",
		FilterSubject: maxDeliveriesSubject(contracts.StreamLoan, work),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * DeadLetterTimeout,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// The server's defaults, said here so that a check compares like with like.
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	}
}

// ErrPermanent marks a handler error that no redelivery can fix: the message goes to the
// dead-letter subject at once.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that the consumer dead-letters the message instead of retrying.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }
