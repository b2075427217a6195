// Package bus is the services' typed view of NATS JetStream: connecting, declaring the
// streams the contracts name, publishing a message with its de-duplication id and trace
// context, and consuming a durable consumer through a typed handler wrapped in small
// layers (recover, time out, dead-letter, acknowledge) whose result becomes an ack, a
// delayed redelivery or a dead letter. Retry policy lives on the consumer (Retry); nothing
// here loops over a failing message.
package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// what people read to find out why a search failed.
func DeadLetterStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        contracts.StreamDeadLetter,
		Description: "messages no delivery could process",
		Subjects:    []string{contracts.SubjectDeadLetter},
		Storage:     jetstream.FileStorage,
		MaxAge:      14 * 24 * time.Hour,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	}
}

// EnsureStreams creates the streams, or updates the ones whose configuration differs from
// ours. The configuration comes from one place, so every service may call it: after a
// broker restart the memory streams are gone, and whichever service notices first puts
// them back. A stream already as configured costs one look-up and no change: on a cluster
// every create or update is a proposal of the meta leader, which replicas starting
// together, or every publish during an outage, must not flood. A memory stream declared
// with another retention by an earlier version is replaced, which loses only work its
// records re-derive.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, cfg := range []jetstream.StreamConfig{LoanStream(replicas), AdvisoryStream(replicas), DeadLetterStream(replicas)} {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	create := func(ctx context.Context) (jetstream.Stream, error) { return js.CreateStream(ctx, cfg) }
	info := func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, cfg.Name) }
	s, err := Declare(ctx, info)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = Declare(ctx, create)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, context.DeadlineExceeded) {
			// Another replica created it meanwhile, or our create went unanswered (which
			// happens to creates racing on a cluster): it is likely there now.
			_, err = Declare(ctx, info)
		}
		return err
	}
	if err != nil {
		return err
	}
	have := s.CachedInfo().Config
	if sameStream(have, cfg) {
		return nil
	}
	if have.Retention != cfg.Retention && cfg.Storage == jetstream.MemoryStorage {
		// JetStream cannot change a stream's retention to or from a work queue.
		if _, err := Declare(ctx, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, js.DeleteStream(ctx, cfg.Name)
		}); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
		_, err := Declare(ctx, create)
		return err
	}
	_, err = Declare(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, cfg) })
	return err
}

// sameStream compares the settings we declare (the server fills in others).
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Storage == want.Storage && have.Retention == want.Retention &&
		have.Discard == want.Discard && have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes &&
		have.Duplicates == want.Duplicates && have.Replicas == want.Replicas && have.Description == want.Description &&
		have.DenyDelete == want.DenyDelete && have.DenyPurge == want.DenyPurge
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

// ErrPermanent marks a handler error that no redelivery can fix: the message goes to the
// dead-letter subject at once.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that the consumer dead-letters the message instead of retrying.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }
