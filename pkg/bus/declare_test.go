package bus

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamDiff, as a service's check reads it: a plan's zeros are the server's defaults, and
// each feature a stream is given by a flag is named when it differs.
func TestStreamDiff(t *testing.T) {
	// What the server reports for a plan that sets none of the features.
	have := jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.v1.>"}, MaxBytes: -1, MaxMsgs: -1,
		MaxMsgsPerSubject: -1, MaxMsgSize: -1, MaxConsumers: -1, Duplicates: 2 * time.Minute}
	plan := jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.v1.>"}}
	if d := StreamDiff(have, plan); len(d) != 0 {
		t.Fatalf("the server's defaults for a plan's zeros differ: %v", d)
	}
	tests := []struct {
		name   string
		change func(*jetstream.StreamConfig)
		want   string
	}{
		{"writes flushed later", func(c *jetstream.StreamConfig) { c.PersistMode = jetstream.AsyncPersistMode }, "persist_mode"},
		{"messages that expire by a header", func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true }, "allow_msg_ttl: have true, want false"},
		{"delete markers", func(c *jetstream.StreamConfig) { c.SubjectDeleteMarkerTTL = time.Minute }, "subject_delete_marker_ttl"},
		{"scheduled messages", func(c *jetstream.StreamConfig) { c.AllowMsgSchedules = true }, "allow_msg_schedules"},
		{"counters", func(c *jetstream.StreamConfig) { c.AllowMsgCounter = true }, "allow_msg_counter"},
		{"atomic batches", func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = true }, "allow_atomic"},
		{"fast batches", func(c *jetstream.StreamConfig) { c.AllowBatchPublish = true }, "allow_batched"},
		{"roll-ups", func(c *jetstream.StreamConfig) { c.AllowRollup = true }, "allow_rollup_hdrs"},
		{"mirror direct gets", func(c *jetstream.StreamConfig) { c.MirrorDirect = true }, "mirror_direct"},
		{"discard new per subject", func(c *jetstream.StreamConfig) { c.DiscardNewPerSubject = true }, "discard_new_per_subject"},
		{"a cap on consumers", func(c *jetstream.StreamConfig) { c.MaxConsumers = 3 }, "max_consumers: have 3, want -1"},
		{"a source", func(c *jetstream.StreamConfig) { c.Sources = []*jetstream.StreamSource{{Name: "X"}} }, "sources: have 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := have
			tt.change(&changed)
			d := StreamDiff(changed, plan)
			if len(d) != 1 || !strings.Contains(d[0], tt.want) {
				t.Errorf("StreamDiff = %q, want one difference naming %q", d, tt.want)
			}
		})
	}
}
