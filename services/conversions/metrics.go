package conversions

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/demobank/yacredits/pkg/contracts"
)

const instrumentation = "github.com/demobank/yacredits/services/conversions"

// metrics are the conversions' figures. The counters count this replica's sends; the
// gauges come from the index, which every replica keeps of the whole bucket, so a
// dashboard takes their max over replicas, not their sum.
type metrics struct {
	recorded, deliveredN, failedN metric.Int64Counter
	sends, refusedN               metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider, idx *index, now func() time.Time) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter(instrumentation)
	var m metrics
	var err error
	if m.recorded, err = meter.Int64Counter("credits.conversions.recorded",
		metric.WithDescription("Conversions reported by the bank's application system and recorded")); err != nil {
		return nil, err
	}
	if m.deliveredN, err = meter.Int64Counter("credits.conversions.delivered",
		metric.WithDescription("Conversions Yandex accepted")); err != nil {
		return nil, err
	}
	if m.failedN, err = meter.Int64Counter("credits.conversions.failed",
		metric.WithDescription("Conversions Yandex refused for good, kept as failed")); err != nil {
		return nil, err
	}
	if m.refusedN, err = meter.Int64Counter("credits.conversions.refused",
		metric.WithDescription("Reports whose offer could not be established, recorded as refused and never sent, by reason")); err != nil {
		return nil, err
	}
	if m.sends, err = meter.Int64Counter("credits.conversions.sends",
		metric.WithDescription("Conversions sent to Yandex, by outcome (delivered, retry, refused, set_aside)")); err != nil {
		return nil, err
	}
	queued, err := meter.Int64ObservableGauge("credits.conversions.queued",
		metric.WithDescription("Conversions recorded and not yet delivered (failed ones apart), across the bucket"))
	if err != nil {
		return nil, err
	}
	failed, err := meter.Int64ObservableGauge("credits.conversions.failed.current",
		metric.WithDescription("Conversions Yandex refused that are still failed, across the bucket"))
	if err != nil {
		return nil, err
	}
	oldest, err := meter.Float64ObservableGauge("credits.conversions.oldest_undelivered_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest undelivered conversion, from its contract date (Yandex takes them for 11 days)"))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := idx.summary(now())
		o.ObserveInt64(queued, int64(s.queued))
		o.ObserveInt64(failed, int64(s.failed))
		o.ObserveFloat64(oldest, s.oldest.Seconds())
		return nil
	}, queued, failed, oldest)
	return &m, err
}

func (m *metrics) sent(ctx context.Context, outcome string, n int) {
	m.sends.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
}
func (m *metrics) delivered(ctx context.Context) { m.deliveredN.Add(ctx, 1) }
func (m *metrics) failed(ctx context.Context)    { m.failedN.Add(ctx, 1) }
func (m *metrics) refused(ctx context.Context, reason string) {
	m.refusedN.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// index is what a replica knows of every conversion not yet delivered, kept by watching
// the bucket: the gauges and the age warnings read it.
type index struct {
	mu    sync.Mutex
	items map[string]indexed
	ready bool // the watch has seen every record there was when it started
}

type indexed struct {
	state    contracts.ConversionState
	contract time.Time // 00:00 Moscow of the contract date
}

type summary struct {
	queued, failed int
	oldest         time.Duration // of queued and failed alike: both still owe Yandex a report
	overdue        []string      // ids of those older than the warning age
}

func newIndex() *index { return &index{items: map[string]indexed{}} }

func (x *index) put(c *contracts.Conversion) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !c.Undelivered() {
		delete(x.items, c.ID)
		return
	}
	day, err := time.ParseInLocation(dateLayout, c.ContractDate, moscow)
	if err != nil {
		day = c.ReportedAt
	}
	x.items[c.ID] = indexed{state: c.State, contract: day}
}

func (x *index) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.items, id)
}

// replace takes fresh's items, a complete pass over the bucket, and is ready.
func (x *index) replace(fresh *index) {
	fresh.mu.Lock()
	items := fresh.items
	fresh.mu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.items, x.ready = items, true
}

func (x *index) summary(now time.Time) summary { return x.summaryOver(now, 0) }

// summaryOver also lists the undelivered conversions older than warn (0: none listed).
func (x *index) summaryOver(now time.Time, warn time.Duration) summary {
	x.mu.Lock()
	defer x.mu.Unlock()
	var s summary
	for id, it := range x.items {
		if it.state == contracts.ConversionFailed {
			s.failed++
		} else {
			s.queued++
		}
		age := now.Sub(it.contract)
		s.oldest = max(s.oldest, age)
		if warn > 0 && age > warn {
			s.overdue = append(s.overdue, id)
		}
	}
	return s
}
