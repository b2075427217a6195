package bus

import (
	"errors"
	"time"
)

// DuplicateWindow is how long JetStream remembers a message id (the LOAN and dead-letter
// streams' Duplicates). It must outlast the longest redelivery of a work message,
// sum(Retry.BackOff), so that a publish repeated by a redelivered message is still known.
const DuplicateWindow = 2 * time.Minute

// Retry is a work consumer's redelivery policy. JetStream applies it (the consumer's
// AckWait, BackOff and MaxDeliver); the consumer only reports each attempt's result.
type Retry struct {
	// BackOff[n-1] is how long the server waits for the ack of delivery n before delivering
	// again, and the delay before the next delivery after a failure. BackOff[0] is how long a
	// crashed replica's message waits before another replica gets it.
	BackOff []time.Duration
	// AckWait is the ack wait the server applies where BackOff does not.
	AckWait time.Duration
	// MaxDeliver is how many deliveries a message gets before it is dead-lettered.
	MaxDeliver int
	// HandlerTimeout bounds one attempt. It is below BackOff[0], so that an attempt ends
	// before the server hands the message to another replica.
	HandlerTimeout time.Duration
}

// DefaultRetry is the policy of the scoring and offers consumers: a crashed replica's
// message is redelivered after 5 s, well within the default 10 s search deadline, and a
// failing one five times over a minute before it is dead-lettered.
func DefaultRetry() Retry {
	return Retry{
		BackOff:        []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second},
		AckWait:        5 * time.Second,
		MaxDeliver:     5,
		HandlerTimeout: 4 * time.Second,
	}
}

// Validate checks the policy's own consistency.
func (r Retry) Validate() error {
	var errs []error
	if len(r.BackOff) == 0 {
		errs = append(errs, errors.New("retry: BackOff is empty"))
	}
	var total time.Duration
	for _, d := range r.BackOff {
		if d <= 0 {
			errs = append(errs, errors.New("retry: a BackOff step is not positive"))
		}
		total += d
	}
	if r.MaxDeliver < 1 {
		errs = append(errs, errors.New("retry: MaxDeliver below 1"))
	}
	if r.HandlerTimeout <= 0 || (len(r.BackOff) > 0 && r.HandlerTimeout >= r.BackOff[0]) {
		errs = append(errs, errors.New("retry: HandlerTimeout must be positive and below BackOff[0]"))
	}
	if total >= DuplicateWindow {
		errs = append(errs, errors.New("retry: the sum of BackOff must stay below the de-duplication window"))
	}
	return errors.Join(errs...)
}

// delay is how long a failed delivery n waits before the next one.
func (r Retry) delay(delivered uint64) time.Duration {
	if len(r.BackOff) == 0 {
		return r.AckWait
	}
	i := min(max(int(delivered)-1, 0), len(r.BackOff)-1)
	return r.BackOff[i]
}
