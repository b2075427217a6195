package check

import (
	"slices"
	"testing"
)

// The recording getenv sees what each LoadConfig asks for.
func TestServicesReadTheirVariables(t *testing.T) {
	tests := []struct {
		service  string
		reads    []string
		notReads []string
	}{
		{"gateway", []string{"HTTP_ADDR", "HEALTH_ADDR", "PHONE_HASH_KEY", "SHUTDOWN_TIMEOUT", "SEARCH_DEADLINE", "AUTH_TOKENS", "NATS_URL", "NATS_REPLICAS", "LOG_LEVEL"}, []string{"CONCURRENCY"}},
		{"scoring", []string{"PHONE_HASH_KEY", "HEALTH_ADDR", "CONCURRENCY", "NATS_PASSWORD", "LOG_FORMAT"}, []string{"HTTP_ADDR", "AUTH_TOKENS"}},
		{"offers", []string{"HEALTH_ADDR", "CONCURRENCY", "NATS_USER"}, []string{"PHONE_HASH_KEY", "SHUTDOWN_TIMEOUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			svc, ok := ServiceByName(tt.service)
			if !ok {
				t.Fatal("no such service")
			}
			read := svc.Reads(nil)
			for _, name := range tt.reads {
				if !read[name] {
					t.Errorf("%s does not read %s", tt.service, name)
				}
			}
			for _, name := range tt.notReads {
				if read[name] {
					t.Errorf("%s reads %s", tt.service, name)
				}
			}
			env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "NATS_URLS": "x", "HEALTH_ADDR": ":8081"}
			if got := svc.UnreadVars(env); !slices.Equal(got, []string{"NATS_URLS"}) {
				t.Errorf("UnreadVars = %v, want [NATS_URLS]", got)
			}
		})
	}
}
