// Package capacity follows how full a bounded stream is, so that a service refuses new work
// while what it already accepted still has room to finish, and says so in a metric that
// alerts before it happens (docs/operating.md, "Storage").
//
// Every file stream has a max_bytes (package provision) and refuses a write beyond it
// (discard new): nothing kept is ever dropped to make room. A search the gateway accepted
// must then still find room for its done record; so the gateway stops taking new searches
// at ShedAt, leaving the rest of the bucket to the searches in flight.
package capacity

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ShedAt is the share of a stream's max_bytes from which new work is refused. The tenth
// left is the room the searches in flight need to finish: at a thousand searches a second,
// a few seconds of done records are megabytes, and the smallest bound the plan accepts is
// far larger.
const ShedAt = 0.9

// Used is the share of maxBytes that bytes fill: 0 for an unbounded stream (max_bytes -1).
func Used(bytes uint64, maxBytes int64) float64 {
	if maxBytes <= 0 {
		return 0
	}
	return float64(bytes) / float64(maxBytes)
}

// Full says whether a stream filled to used takes no new work.
func Full(used float64) bool { return used >= ShedAt }

// FillingAt is the share from which a stream is filling (the StoreFilling alert): a
// provisioner sets no bound a stream would already hold this much of.
const FillingAt = 0.8

// IsFull says whether err is a stream refusing a write because it holds its max_bytes (or
// another of its limits: discard new), or a server refusing it because its file store is
// at max_file_store.
func IsFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == errCodeStreamStoreFailed && slices.Contains(limitErrors, apiErr.Description) ||
		apiErr.ErrorCode == errCodeInsufficientResources
}

// nats-server's JSStreamStoreFailedF and JSInsufficientResourcesErr, which nats.go does not
// name.
const (
	errCodeStreamStoreFailed     jetstream.ErrorCode = 10077
	errCodeInsufficientResources jetstream.ErrorCode = 10023
)

// limitErrors are the descriptions nats-server gives a write a limit refused.
var limitErrors = []string{"maximum bytes exceeded", "maximum messages exceeded", "maximum messages per subject exceeded"}

// Info reads a stream's state: one STREAM.INFO request.
type Info func(ctx context.Context) (*jetstream.StreamInfo, error)

// StreamInfo is the Info of stream name.
func StreamInfo(js jetstream.JetStream, name string) Info {
	return func(ctx context.Context) (*jetstream.StreamInfo, error) {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		return s.CachedInfo(), nil
	}
}

// Gauge follows one stream. Its reads are one atomic load, for the hot path; the stream is
// read on a goroutine of its own (Run), so that a broker slow to answer delays no request:
// until the next answer the last one stands.
type Gauge struct {
	Stream string
	used   atomic.Uint64 // math.Float64bits of the share used
	readAt atomic.Int64  // when the stream was last read with a bound, in Unix nanoseconds; 0: never
	stale  atomic.Int64  // how old a reading may be, in nanoseconds (Stale, or more: Run)
	read   Info
}

// Stale is how old a reading may be and still be reported, for a stream read at least once
// a minute: past it the metric goes absent (the StoreFillUnknown alert), rather than stand
// at its last value, or at 0 if the stream was never read (a permission not rolled out,
// say). A stream with no bound (an upgraded one the provisioner could not yet bound) is
// never fresh: how full it is means nothing, so the alert says so.
const Stale = time.Minute

// New returns a Gauge of stream, read with read.
func New(stream string, read Info) *Gauge { return &Gauge{Stream: stream, read: read} }

// Used is the share of the stream's max_bytes used at the last reading.
func (g *Gauge) Used() float64 { return math.Float64frombits(g.used.Load()) }

// Full says whether the stream takes no new work.
func (g *Gauge) Full() bool { return Full(g.Used()) }

// FirstFull is the first of gauges that is Full, or nil.
func FirstFull(gauges []*Gauge) *Gauge {
	for _, g := range gauges {
		if g.Full() {
			return g
		}
	}
	return nil
}

// Poll reads the stream once.
func (g *Gauge) Poll(ctx context.Context) error {
	info, err := g.read(ctx)
	if err != nil {
		return err
	}
	g.used.Store(math.Float64bits(Used(info.State.Bytes, info.Config.MaxBytes)))
	if info.Config.MaxBytes > 0 {
		g.readAt.Store(time.Now().UnixNano())
	} else {
		g.readAt.Store(0)
	}
	return nil
}

// Fresh says whether the stream, bounded, was read recently enough (Stale, or three of
// Run's intervals when they are longer).
func (g *Gauge) Fresh() bool {
	at := g.readAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < max(Stale, time.Duration(g.stale.Load()))
}

// ReportInterval is how often a stream followed only for its metric is read.
const ReportInterval = 15 * time.Second

// Run reads the stream every interval until ctx ends. A read that fails leaves the last
// state standing: the broker's own answer to a write then decides.
func (g *Gauge) Run(ctx context.Context, interval time.Duration) {
	g.stale.Store(int64(3 * interval))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, interval)
		_ = g.Poll(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Register reports the gauges as credits.store.used_ratio{stream}: the share of each
// stream's max_bytes in use, which the StoreFilling alert watches; a gauge not read within
// Stale is not reported.
func Register(meter metric.Meter, gauges ...*Gauge) error {
	_, err := meter.Float64ObservableGauge("credits.store.used_ratio",
		metric.WithDescription("Share of a stream's max_bytes in use; new work is refused from 0.9"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			for _, g := range gauges {
				if g.Fresh() {
					o.Observe(g.Used(), metric.WithAttributes(attribute.String("stream", g.Stream)))
				}
			}
			return nil
		}))
	return err
}
