package check

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/demobank/yacredits/pkg/offerlink"
)

// Certificate and Issuer are the fields of cert-manager's kinds (cert-manager.io/v1) our
// manifests use, decoded strictly like the others: a field outside them is a field nobody
// reviewed. Importing cert-manager's own types would pull its controller's dependencies
// into the checks for two small structs.
type Certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string      `json:"secretName"`
		CommonName  string      `json:"commonName,omitempty"`
		IsCA        bool        `json:"isCA,omitempty"`
		Duration    string      `json:"duration,omitempty"`
		RenewBefore string      `json:"renewBefore,omitempty"`
		PrivateKey  *PrivateKey `json:"privateKey,omitempty"`
		Usages      []string    `json:"usages,omitempty"`
		DNSNames    []string    `json:"dnsNames,omitempty"`
		IssuerRef   IssuerRef   `json:"issuerRef"`
	} `json:"spec"`
}

// PrivateKey is how cert-manager makes a Certificate's key.
type PrivateKey struct {
	Algorithm string `json:"algorithm"`
	Size      int    `json:"size"`
}

// IssuerRef names the Issuer of a Certificate.
type IssuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

// Issuer is a namespace's issuer of certificates: self-signed, or a CA from a Secret.
type Issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// certificateKeys are the keys of the Secret cert-manager writes for a Certificate.
var certificateKeys = []string{"tls.crt", "tls.key", "ca.crt"}

// certificateFor returns the Certificate that writes Secret name, if one does.
func (c *Cluster) certificateFor(name string) *Certificate {
	for _, crt := range c.Certificates {
		if crt.Spec.SecretName == name {
			return crt
		}
	}
	return nil
}

var standIn struct {
	once  sync.Once
	files map[string]string // Secret key (tls.crt, tls.key, ca.crt, keys.json) → a file holding one
	err   error
}

// standInFile returns a file of the kind a certificate Secret's key holds (or a link key
// set, for keys.json), so that the server's own parser, which loads every certificate a
// configuration names, and the services' start-up checks can read files that exist only in
// the cluster.
func standInFile(key string) (string, error) {
	standIn.once.Do(func() { standIn.files, standIn.err = writeStandIns() })
	if standIn.err != nil {
		return "", standIn.err
	}
	f, ok := standIn.files[key]
	if !ok {
		return "", fmt.Errorf("key %q is not one of a certificate Secret's %v, nor a link key set's keys.json", key, certificateKeys)
	}
	return f, nil
}

func writeStandIns() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "check-tls-")
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stand-in"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"nats"},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	linkKey, err := offerlink.GenerateKey("stand-in")
	if err != nil {
		return nil, err
	}
	linkKeys, err := offerlink.NewKeySet(linkKey).Marshal()
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, data := range map[string][]byte{
		"tls.crt": crt, "ca.crt": crt,
		"tls.key":   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		"keys.json": linkKeys,
	} {
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], data, 0o600); err != nil {
			return nil, err
		}
	}
	return files, nil
}
