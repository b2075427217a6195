package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ObserveFill reports, at each collection, how full each of streams is against its bound:
// credits.stream.fill{stream}, bytes held ÷ max_bytes (a stream without a bound is not
// reported). A bounded stream that fills takes nothing new, so the alert comes before it does
// (deploy/prometheus/alerts.yaml). Each look-up has a second: a collection waits on no outage.
func ObserveFill(mp metric.MeterProvider, js jetstream.JetStream, streams ...string) error {
	if mp == nil {
		return nil
	}
	meter := mp.Meter("github.com/demobank/yacredits/pkg/bus")
	fill, err := meter.Float64ObservableGauge("credits.stream.fill",
		metric.WithDescription("How full a bounded stream is: bytes held over its max_bytes, on its leader"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		for _, name := range streams {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			s, err := js.Stream(ctx, name)
			cancel()
			if err != nil {
				continue // not there yet, or unreachable: readiness says so
			}
			info := s.CachedInfo()
			if info.Config.MaxBytes > 0 {
				o.ObserveFloat64(fill, float64(info.State.Bytes)/float64(info.Config.MaxBytes),
					metric.WithAttributes(attribute.String("stream", name)))
			}
		}
		return nil
	}, fill)
	return err
}
