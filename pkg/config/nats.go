package config

import "time"

// NATS is how a service reaches JetStream.
type NATS struct {
	URL      string // NATS_URL
	User     string // NATS_USER
	Password string // NATS_PASSWORD (a secret)
	// Replicas is how many copies of each stream and bucket a service creates (NATS_REPLICAS):
	// 1 for a single server, 3 for a production cluster.
	Replicas int
	// ConnectTimeout bounds the first connection (NATS_CONNECT_TIMEOUT).
	ConnectTimeout time.Duration
}

// ReadNATS reads the NATS_* variables.
func ReadNATS(r *Reader) NATS {
	n := NATS{
		URL:            r.String("NATS_URL", "nats://127.0.0.1:4222"),
		User:           r.String("NATS_USER", ""),
		Password:       r.Secret("NATS_PASSWORD", ""),
		Replicas:       r.Int("NATS_REPLICAS", 1, 1, 5),
		ConnectTimeout: r.Duration("NATS_CONNECT_TIMEOUT", 10*time.Second, time.Second, 10*time.Minute),
	}
	if (n.User == "") != (n.Password == "") {
		r.Fail("NATS_USER", "NATS_USER and NATS_PASSWORD go together")
	}
	return n
}
