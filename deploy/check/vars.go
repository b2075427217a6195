package check

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/services/conversions"
	"github.com/demobank/yacredits/services/gateway"
	"github.com/demobank/yacredits/services/offers"
	"github.com/demobank/yacredits/services/scoring"
)

// OTelPrefix marks the variables the OpenTelemetry SDK reads itself (exporter, endpoint,
// protocol, sampler, resource): no LoadConfig asks for them, yet they are read.
const OTelPrefix = "OTEL_"

// Service is one of our services as the deployment sees it: how it loads its settings.
type Service struct {
	Name string
	// Load is the service's LoadConfig with the result reduced to what a check needs.
	Load func(config.Getenv) (Settings, error)
	// Package is the main package its image is built from (the Dockerfile's SERVICE): the
	// service's own command, or yactl for the provisioner.
	Package string
}

// Settings are the loaded values the checks compare with the manifests.
type Settings struct {
	// ShutdownTimeout is how long the service lets in-flight work finish on SIGTERM (the
	// gateway's SHUTDOWN_TIMEOUT); zero for the consumers, which drain instead.
	ShutdownTimeout time.Duration
	// Deadline is the longest a search may take (SEARCH_DEADLINE); zero where not read.
	Deadline time.Duration
	// HTTPAddr (the gateway's API) and HealthAddr are the listen addresses.
	HTTPAddr, HealthAddr string
	// NATSReplicas is how many copies of each stream and bucket the service expects.
	NATSReplicas int
	// Plan is the settings of the provisioning plan the service reads (zero: not read):
	// they must be the provisioner's, or the service reports the difference.
	Plan provision.Settings
}

// Services are the four services and the provisioner, by the name their container and
// compose service have.
var Services = []Service{
	{"gateway", func(getenv config.Getenv) (Settings, error) {
		c, err := gateway.LoadConfig(getenv)
		return Settings{ShutdownTimeout: c.ShutdownTimeout, Deadline: c.Deadline,
			HealthAddr: c.HealthAddr, HTTPAddr: c.HTTPAddr, NATSReplicas: c.NATS.Replicas,
			Plan: provision.Settings{Replicas: c.NATS.Replicas, SearchRetention: c.Retention}}, err
	}, "./services/gateway/cmd/gateway"},
	{"scoring", func(getenv config.Getenv) (Settings, error) {
		c, err := scoring.LoadConfig(getenv)
		return Settings{HealthAddr: c.HealthAddr, NATSReplicas: c.NATS.Replicas,
			Plan: provision.Settings{Replicas: c.NATS.Replicas}}, err
	}, "./services/scoring/cmd/scoring"},
	{"offers", func(getenv config.Getenv) (Settings, error) {
		c, err := offers.LoadConfig(getenv)
		return Settings{HealthAddr: c.HealthAddr, NATSReplicas: c.NATS.Replicas,
			Plan: provision.Settings{Replicas: c.NATS.Replicas, AuditRetention: c.AuditRetention}}, err
	}, "./services/offers/cmd/offers"},
	{"conversions", func(getenv config.Getenv) (Settings, error) {
		c, err := conversions.LoadConfig(getenv)
		return Settings{HealthAddr: c.HealthAddr, NATSReplicas: c.NATS.Replicas,
			Plan: provision.Settings{Replicas: c.NATS.Replicas, ConversionsRetention: c.Retention, DeliveryAckWait: c.Delivery.AckWait}}, err
	}, "./services/conversions/cmd/conversions"},
	// The provisioner: yactl provision -watch, with the one NATS user that makes streams.
	{"provision", func(getenv config.Getenv) (Settings, error) {
		c, err := provision.LoadConfig(getenv)
		return Settings{HealthAddr: c.HealthAddr, NATSReplicas: c.NATS.Replicas, Plan: c.Settings}, err
	}, "./cmd/yactl"},
}

// ServiceByName returns the service called name.
func ServiceByName(name string) (Service, bool) {
	i := slices.IndexFunc(Services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		return Service{}, false
	}
	return Services[i], true
}

// Reads returns the names of the variables the service asks for when its settings are
// loaded from env, found through a getenv that writes down every name. Loading from an
// empty environment as well catches names asked for only when others are unset.
func (s Service) Reads(env map[string]string) map[string]bool {
	read := map[string]bool{}
	for _, e := range []map[string]string{{}, env} {
		_, _ = s.Load(func(name string) string { // an invalid environment is no matter here
			read[name] = true
			return e[name]
		})
	}
	return read
}

// UnreadVars returns, sorted, the names in env that the service does not read. Names
// with the OTEL_ prefix count as read (by the OpenTelemetry SDK).
func (s Service) UnreadVars(env map[string]string) []string {
	read := s.Reads(env)
	var unread []string
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if !read[name] && !strings.HasPrefix(name, OTelPrefix) {
			unread = append(unread, name)
		}
	}
	return unread
}

// LoadEnv loads the service's settings from exactly env, as the process would see it.
func (s Service) LoadEnv(env map[string]string) (Settings, error) {
	st, err := s.Load(func(name string) string { return env[name] })
	if err != nil {
		return st, fmt.Errorf("%s does not start with this environment: %w", s.Name, err)
	}
	return st, nil
}

// PlanDisagreements lists the settings of the provisioning plan a service reads otherwise
// than the provisioner does: each would have the service report the difference, or the
// provisioner undo what the service was set up for.
func PlanDisagreements(provisioner provision.Settings, service string, st provision.Settings) []string {
	var out []string
	add := func(name string, mine, theirs any, known bool) {
		if known && mine != theirs {
			out = append(out, fmt.Sprintf("%s reads %s=%v, the provisioner %v", service, name, mine, theirs))
		}
	}
	add("NATS_REPLICAS", st.Replicas, provisioner.Replicas, st.Replicas != 0)
	add("SEARCH_RETENTION", st.SearchRetention, provisioner.SearchRetention, st.SearchRetention != 0)
	add("AUDIT_RETENTION", st.AuditRetention, provisioner.AuditRetention, st.AuditRetention != 0)
	add("CONVERSIONS_RETENTION", st.ConversionsRetention, provisioner.ConversionsRetention, st.ConversionsRetention != 0)
	add("DELIVERY_ACK_WAIT", st.DeliveryAckWait, provisioner.DeliveryAckWait, st.DeliveryAckWait != 0)
	return out
}
