package bus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/demobank/yacredits/pkg/config"
	"github.com/demobank/yacredits/pkg/natstest"
)

// authority is a certificate authority of a test's own, written as PEM files.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newAuthority(t *testing.T, name string) *authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	a := &authority{cert: cert, key: key, file: filepath.Join(t.TempDir(), name+".crt")}
	writePEM(t, a.file, "CERTIFICATE", der)
	return a
}

// serverFiles issues a certificate for 127.0.0.1 and returns its certificate and key files.
func (a *authority) serverFiles(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readNATS(t *testing.T, env map[string]string) (config.NATS, error) {
	r := config.NewReader(func(k string) string { return env[k] })
	n := config.ReadNATS(r)
	return n, r.Err()
}

// With NATS_CA_FILE the services speak TLS to the server and trust only that authority:
// a server whose certificate another authority issued is refused, as is a plain client.
func TestConnectOverTLSTrustsOnlyTheConfiguredAuthority(t *testing.T) {
	ours, theirs := newAuthority(t, "ours"), newAuthority(t, "theirs")
	certFile, keyFile := ours.serverFiles(t)
	srv := natstest.RunServerWith(t, func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile, Timeout: 2})
		if err != nil {
			t.Fatal(err)
		}
		o.TLSConfig, o.TLS, o.TLSTimeout = tc, true, 2
	})
	url := "tls://" + srv.Addr().String()

	cfg, err := readNATS(t, map[string]string{"NATS_URL": url, "NATS_CA_FILE": ours.file})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(natstest.Context(t, 10*time.Second), cfg, "tls-test", nats.RetryOnFailedConnect(false))
	if err != nil {
		t.Fatalf("connect with our CA: %v", err)
	}
	if state, err := nc.TLSConnectionState(); err != nil || !state.HandshakeComplete || state.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v, %v", state, err)
	}
	nc.Close()

	cfg.CAFile = theirs.file
	if nc, err := Connect(natstest.Context(t, 10*time.Second), cfg, "tls-test", nats.RetryOnFailedConnect(false)); err == nil {
		nc.Close()
		t.Error("connected trusting another authority")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("refusal does not name the certificate: %v", err)
	}

	plain := config.NATS{URL: "nats://" + srv.Addr().String(), ConnectTimeout: 2 * time.Second}
	if nc, err := Connect(natstest.Context(t, 10*time.Second), plain, "plain", nats.RetryOnFailedConnect(false)); err == nil {
		nc.Close()
		t.Error("a plain-text client connected to a TLS server")
	}
}

func TestNATSCAFileIsCheckedAtStart(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{notPEM, filepath.Join(t.TempDir(), "missing.crt")} {
		if _, err := readNATS(t, map[string]string{"NATS_CA_FILE": file}); err == nil || !strings.Contains(err.Error(), "NATS_CA_FILE") {
			t.Errorf("%s: err = %v, want one naming NATS_CA_FILE", file, err)
		}
	}
}
