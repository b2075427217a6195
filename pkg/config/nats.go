package config

import (
	"crypto/x509"
	"os"
	"time"
)

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
	// CAFile is a PEM file of the certificate authorities the servers' certificates must
	// chain to (NATS_CA_FILE); set, the connection is TLS and nothing else is trusted.
	CAFile string
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
	if n.CAFile = r.String("NATS_CA_FILE", ""); n.CAFile != "" {
		// Checked now: a wrong mount would otherwise show as endless reconnects.
		pem, err := os.ReadFile(n.CAFile)
		if err != nil {
			r.Fail("NATS_CA_FILE", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			r.Fail("NATS_CA_FILE", "%s holds no PEM certificate", n.CAFile)
		}
	}
	if (n.User == "") != (n.Password == "") {
		r.Fail("NATS_USER", "NATS_USER and NATS_PASSWORD go together")
	}
	if n.Password != "" && !AllLoopback(n.URL) {
		r.RequireSecrets("NATS_PASSWORD", n.Password)
	}
	return n
}
