// Package bus is the services' typed view of NATS JetStream: connecting, declaring the
// streams the contracts name, publishing a message with its de-duplication id and trace
// context, and consuming a durable consumer through a typed handler whose result becomes
// an ack, a delayed redelivery or a dead letter. Retry policy lives on the consumer (see
// contracts.BackOff); nothing here loops over a failing message.
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

// Connect dials NATS and keeps reconnecting for as long as the process lives: a broker
// restart must not need a service restart.
func Connect(ctx context.Context, cfg config.NATS, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.Timeout(cfg.ConnectTimeout),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	opts = append(opts, extra...)
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(cfg.URL, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to nats at %s: %w", cfg.URL, r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// LoanStream is the configuration of the stream of loan.v1 work messages. It is memory
// storage: each message can be derived again from its durable search record, and the
// gateway's sweeper does so after a broker restart, so a disk sync here would buy nothing.
func LoanStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        contracts.StreamLoan,
		Description: "loan.v1 work messages (re-derivable from the searches bucket)",
		Subjects:    []string{contracts.SubjectRequested, contracts.SubjectScored},
		Storage:     jetstream.MemoryStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      15 * time.Minute,
		MaxBytes:    512 << 20,
		Duplicates:  contracts.DuplicateWindow,
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
		Replicas:    replicas,
	}
}

// EnsureStreams creates or updates both streams. The configuration comes from one place,
// so every service may call it: after a broker restart the memory stream is gone, and
// whichever service notices first puts it back.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, cfg := range []jetstream.StreamConfig{LoanStream(replicas), DeadLetterStream(replicas)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// WorkConsumer is the durable consumer configuration shared by the replicas of a service.
func WorkConsumer(name, subject string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       contracts.AckWait,
		MaxDeliver:    contracts.MaxDeliver,
		BackOff:       contracts.BackOff,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// ErrPermanent marks a handler error that no redelivery can fix: the message goes to the
// dead-letter subject at once.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that the consumer dead-letters the message instead of retrying.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }
