package gateway

import (
	"net/netip"
	"time"

	"github.com/demobank/yacredits/pkg/bus"
	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/phone"
	"github.com/demobank/yacredits/pkg/provision"
	"github.com/demobank/yacredits/pkg/telemetry"
)

// Config is everything the gateway reads from its environment.
type Config struct {
	HTTPAddr   string // HTTP_ADDR: the API
	HealthAddr string // HEALTH_ADDR: /healthz, /readyz; empty serves them on HTTP_ADDR
	BankName   string // BANK_NAME: the answer's "name"
	// TestPhones (TEST_PHONES) is a file of phones with fixed outcomes (pkg/testphones):
	// their searches are marked as tests. Empty: none.
	TestPhones string

	PhoneHashKey []byte // PHONE_HASH_KEY: the HMAC key phones are hashed with (secret)
	// PhoneHashKeysOld (PHONE_HASH_KEYS_OLD) are the earlier keys, after a rotation: a
	// stored search made under one is compared under it, and a new search carries its
	// phone's hash under each for scoring (secret).
	PhoneHashKeysOld [][]byte

	SyncBudget     time.Duration // SYNC_BUDGET: how long a POST waits for done before answering pending
	Deadline       time.Duration // SEARCH_DEADLINE: past it a search is finished as rejected
	Retention      time.Duration // SEARCH_RETENTION: how long a search is kept
	SweepInterval  time.Duration // SWEEP_INTERVAL: how often unfinished searches are checked
	RepublishAfter time.Duration // REPUBLISH_AFTER: when a search with no progress is sent again

	Auth      Auth
	RateLimit float64 // RATE_LIMIT: requests per second over all clients; 0 is no limit
	RateBurst int     // RATE_BURST

	// TraceTrusted (TRACE_TRUSTED_NETWORKS, CIDRs) are callers whose trace context a request
	// continues; any other caller's is only linked (see edge).
	TraceTrusted []netip.Prefix

	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long in-flight requests get on shutdown
	ReadTimeout     time.Duration // HTTP_READ_TIMEOUT: how long a client may take to send its request
	NATS            config.NATS
	Log             telemetry.LogConfig
}

// Auth is who may call the API (spec §7). All empty: anybody may.
type Auth struct {
	Tokens          []string       // AUTH_TOKENS: accepted bearer tokens, comma-separated (secret)
	ClientID        string         // AUTH_CLIENT_ID: HTTP Basic user
	ClientSecret    string         // AUTH_CLIENT_SECRET: HTTP Basic password (secret)
	AllowedNetworks []netip.Prefix // ALLOWED_NETWORKS: source CIDRs, comma-separated
	// ClientIPHeader (CLIENT_IP_HEADER) names a header our own proxies append the caller's
	// address to (X-Forwarded-For). It is read only on connections from TrustedProxies.
	ClientIPHeader string
	// TrustedProxies (TRUSTED_PROXIES) are our own proxies' networks, CIDRs: only their
	// connections have CLIENT_IP_HEADER read, and their addresses in it are skipped.
	TrustedProxies []netip.Prefix
	// Disabled (AUTH_DISABLED) lets a gateway on a non-loopback address run without
	// credentials, when another layer authenticates Yandex: said at every start.
	Disabled bool
}

// LoadConfig reads and checks the gateway's variables, reporting every problem at once.
func LoadConfig(getenv config.Getenv) (Config, error) {
	r := config.NewReader(getenv)
	c := Config{
		HTTPAddr:        r.Addr("HTTP_ADDR", "127.0.0.1:8080"),
		HealthAddr:      r.Addr("HEALTH_ADDR", ""),
		BankName:        r.String("BANK_NAME", "АО Демо-банк"),
		TestPhones:      r.String("TEST_PHONES", ""),
		PhoneHashKey:    []byte(r.Secret("PHONE_HASH_KEY", "")),
		SyncBudget:      r.Duration("SYNC_BUDGET", 1500*time.Millisecond, 0, time.Minute),
		Deadline:        r.Duration("SEARCH_DEADLINE", 10*time.Second, time.Second, time.Hour),
		Retention:       provision.ReadSearchRetention(r),
		SweepInterval:   r.Duration("SWEEP_INTERVAL", 500*time.Millisecond, 10*time.Millisecond, time.Minute),
		RepublishAfter:  r.Duration("REPUBLISH_AFTER", 2*time.Second, 100*time.Millisecond, time.Hour),
		RateLimit:       r.Float("RATE_LIMIT", 0, 0, 1e6),
		RateBurst:       r.Int("RATE_BURST", 100, 1, 1_000_000),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", 15*time.Second, time.Second, 10*time.Minute),
		ReadTimeout:     r.Duration("HTTP_READ_TIMEOUT", 10*time.Second, 100*time.Millisecond, time.Minute),
		TraceTrusted:    r.Prefixes("TRACE_TRUSTED_NETWORKS"),
		NATS:            config.ReadNATS(r),
		Log:             telemetry.ReadLogConfig(r),
		Auth: Auth{
			Tokens:          r.List("AUTH_TOKENS"),
			ClientID:        r.String("AUTH_CLIENT_ID", ""),
			ClientSecret:    r.Secret("AUTH_CLIENT_SECRET", ""),
			AllowedNetworks: r.Prefixes("ALLOWED_NETWORKS"),
			ClientIPHeader:  r.String("CLIENT_IP_HEADER", ""),
			TrustedProxies:  r.Prefixes("TRUSTED_PROXIES"),
			Disabled:        r.Bool("AUTH_DISABLED", false),
		},
	}
	if len(c.PhoneHashKey) < phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEY", "required, at least %d bytes (for example: openssl rand -hex 32)", phone.MinKeyBytes)
	}
	// Reached beyond this machine through either listener: the API, or health and metrics.
	local := config.AllLoopback(c.HTTPAddr, c.HealthAddr)
	if err := phone.CheckKey(c.PhoneHashKey); err != nil && !local && len(c.PhoneHashKey) >= phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEY", "refused on a gateway listening beyond loopback (HTTP_ADDR %s, HEALTH_ADDR %s): %v", c.HTTPAddr, c.HealthAddr, err)
	}
	c.PhoneHashKeysOld = phone.ReadOldKeys(r, !local)
	if _, err := phone.NewKeyring(c.PhoneHashKey, c.PhoneHashKeysOld...); err != nil && len(c.PhoneHashKey) >= phone.MinKeyBytes {
		r.Fail("PHONE_HASH_KEYS_OLD", "%v", err)
	}
	if !local {
		r.RequireSecrets("AUTH_TOKENS", c.Auth.Tokens...)
		if c.Auth.ClientSecret != "" {
			r.RequireSecrets("AUTH_CLIENT_SECRET", c.Auth.ClientSecret)
		}
	}
	if !local && !c.Auth.Disabled && len(c.Auth.Tokens) == 0 && c.Auth.ClientID == "" {
		r.Fail("AUTH_TOKENS", "a gateway listening beyond loopback (%s) needs credentials: AUTH_TOKENS, or AUTH_CLIENT_ID and AUTH_CLIENT_SECRET (or AUTH_DISABLED=true when another layer authenticates Yandex)", c.HTTPAddr)
	}
	if c.Auth.ClientIPHeader != "" && len(c.Auth.TrustedProxies) == 0 {
		r.Fail("CLIENT_IP_HEADER", "is read only from TRUSTED_PROXIES, and none are set: a header from anyone else is the caller's own word")
	}
	if (c.Auth.ClientID == "") != (c.Auth.ClientSecret == "") {
		r.Fail("AUTH_CLIENT_ID", "AUTH_CLIENT_ID and AUTH_CLIENT_SECRET go together")
	}
	if c.SyncBudget >= c.Deadline {
		r.Fail("SYNC_BUDGET", "must be shorter than SEARCH_DEADLINE (%s)", c.Deadline)
	}
	if c.RepublishAfter >= c.Deadline {
		r.Fail("REPUBLISH_AFTER", "must be shorter than SEARCH_DEADLINE (%s)", c.Deadline)
	}
	if c.SweepInterval >= c.RepublishAfter {
		r.Fail("SWEEP_INTERVAL", "must be shorter than REPUBLISH_AFTER (%s), or re-sends wait for the sweep", c.RepublishAfter)
	}
	if c.Retention <= c.Deadline {
		r.Fail("SEARCH_RETENTION", "must be longer than SEARCH_DEADLINE (%s): a search must outlive its deadline", c.Deadline)
	}
	if c.Retention <= bus.DuplicateWindow {
		r.Fail("SEARCH_RETENTION", "must be longer than the de-duplication window (%s): a retry inside the window is answered from the record", bus.DuplicateWindow)
	}
	return c, r.Err()
}
