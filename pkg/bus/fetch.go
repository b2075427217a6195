package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Fetch pulls up to n messages from cons, waiting up to wait for them (the pull's expiry on
// the server), for the workers that take their work in batches. It ends when the server
// ends the pull, not at a deadline of its own: a client that gives up first (a context's
// deadline, which nats.go's FetchContext sets a tenth after the server's expiry) drops a
// message the server sent just before, and that message then waits out the consumer's
// ack wait, two minutes for the conversions' delivery, before it is delivered again. Under
// load that tenth is gone. When ctx ends it waits for the pull to end (its expiry, a second
// more at most, so that no goroutine of it outlives the caller) and returns what it got,
// with ctx's error, for the caller to hand back.
func Fetch(ctx context.Context, cons jetstream.Consumer, n int, wait time.Duration) ([]jetstream.Msg, error) {
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	ch := batch.Messages()
	for {
		select {
		case <-ctx.Done():
			for m := range ch {
				msgs = append(msgs, m)
			}
			return msgs, ctx.Err()
		case m, ok := <-ch:
			if !ok {
				err := batch.Error()
				if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
					err = nil // the pull expired: no more work now
				}
				return msgs, err
			}
			msgs = append(msgs, m)
		}
	}
}
