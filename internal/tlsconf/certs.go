package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// CA is a certificate authority that issues ECDSA P-256 certificates, for
// `weir certs generate` and for tests. Production clusters bring their own
// (cert-manager, Vault, ...).
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA creates a self-signed CA valid for validity from now.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"weir"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der)}, nil
}

// Issue signs a certificate for hosts (IP addresses or DNS names), usable
// by a server and a client alike, valid from notBefore to notAfter. It
// returns the certificate and key in PEM.
func (ca *CA) Issue(name string, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"weir"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
}

// LoadCA reads a CA written by Generate (ca.pem, ca-key.pem), to issue
// more certificates with it.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA %s with key %s: %w", certFile, keyFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA key %s is not ECDSA", keyFile)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", pair.Certificate[0])}, nil
}

// KeyPEM is the CA's private key in PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// DefaultHosts are in every certificate Generate writes.
var DefaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// Generated lists the files Generate wrote.
type Generated struct {
	CA, CAKey, NodeCert, NodeKey, ClientCert, ClientKey string
}

// Generate writes into dir a new CA (ca.pem, ca-key.pem), a node
// certificate for every process (node.pem, node-key.pem: server and client,
// for hosts and DefaultHosts) and one for the CLI (client.pem,
// client-key.pem), all valid for validity. Keys are written 0600.
func Generate(dir string, hosts []string, validity time.Duration) (Generated, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Generated{}, err
	}
	ca, err := NewCA("weir CA", validity)
	if err != nil {
		return Generated{}, err
	}
	all := slices.Clone(DefaultHosts)
	for _, h := range hosts {
		if h != "" && !slices.Contains(all, h) {
			all = append(all, h)
		}
	}
	now := time.Now()
	nodeCert, nodeKey, err := ca.Issue("weir node", all, now.Add(-time.Minute), now.Add(validity))
	if err != nil {
		return Generated{}, err
	}
	cliCert, cliKey, err := ca.Issue("weir client", nil, now.Add(-time.Minute), now.Add(validity))
	if err != nil {
		return Generated{}, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return Generated{}, err
	}
	g := Generated{
		CA: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca-key.pem"),
		NodeCert: filepath.Join(dir, "node.pem"), NodeKey: filepath.Join(dir, "node-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{g.CA, ca.CertPEM, 0o644}, {g.CAKey, caKey, 0o600},
		{g.NodeCert, nodeCert, 0o644}, {g.NodeKey, nodeKey, 0o600},
		{g.ClientCert, cliCert, 0o644}, {g.ClientKey, cliKey, 0o600},
	} {
		if err := WriteFileAtomic(f.path, f.data, f.mode); err != nil {
			return Generated{}, err
		}
	}
	return g, nil
}

// WriteFileAtomic writes data to a temporary file beside path and renames
// it over path, so a reader never sees half a file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
