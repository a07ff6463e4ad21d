package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
)

// The TCP endpoint's TLS material lives under the state root, root-only:
// a CA made at first start, the server's certificate (for the loopback
// names, the host name and the listen address) and two client
// certificates, admin and viewer, which `pelagos-agent kubeconfig` embeds.
// Everything is reused across restarts; a certificate is made again when
// missing, close to expiry, not from this CA, or (the server's) not naming
// the listen address. Deleting the directory revokes every kubeconfig:
// the next start makes a new CA.
const (
	tlsDirName   = "kubeapi"
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 5 * 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
	// endpointFile records the address the agent serves on, for the
	// kubeconfig command.
	endpointFile = "endpoint"
)

// clientCert names one client certificate.
type clientCert struct {
	file, user, group string
}

var (
	adminClient  = clientCert{"admin", "pelagos-admin", kubeapi.GroupAdmin}
	viewerClient = clientCert{"viewer", "pelagos-viewer", kubeapi.GroupViewer}
)

func tlsDir(root string) string { return filepath.Join(root, tlsDirName) }

// keyPair is a certificate with its key.
type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func (kp *keyPair) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.der})
}

func (kp *keyPair) keyPEM() ([]byte, error) {
	b, err := x509.MarshalECPrivateKey(kp.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}), nil
}

func loadPair(dir, name string) (*keyPair, error) {
	cb, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, fmt.Errorf("%s/%s: not PEM", dir, name)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s/%s.crt: %w", dir, name, err)
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s/%s.key: %w", dir, name, err)
	}
	return &keyPair{cert: cert, key: key, der: cblock.Bytes}, nil
}

// writeFile writes atomically with mode 0600.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Chmod(0o600)
		if err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func savePair(dir, name string, kp *keyPair) error {
	k, err := kp.keyPEM()
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, name+".key"), k); err != nil {
		return fmt.Errorf("write %s/%s.key: %w", dir, name, err)
	}
	if err := writeFile(filepath.Join(dir, name+".crt"), kp.certPEM()); err != nil {
		return fmt.Errorf("write %s/%s.crt: %w", dir, name, err)
	}
	return nil
}

func newPair(tmpl *x509.Certificate, parent *keyPair) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key, der: der}, nil
}

// usable reports whether kp is signed by ca, valid for a while yet, and
// (for a server) names every host.
func usable(kp *keyPair, ca *keyPair, now time.Time, hosts []string) bool {
	if kp == nil || kp.cert.CheckSignatureFrom(ca.cert) != nil || now.Add(renewBefore).After(kp.cert.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if kp.cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// tlsMaterial makes or loads the CA and the certificates and returns the
// server's TLS configuration: client certificates from this CA required.
func tlsMaterial(root string, hosts []string) (*tls.Config, error) {
	dir := tlsDir(root)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("TLS directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("TLS directory %s: %w", dir, err)
	}
	now := time.Now()
	ca, err := loadPair(dir, "ca")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("TLS CA (remove %s to start over): %w", dir, err)
	}
	if ca == nil || now.After(ca.cert.NotAfter) {
		host, _ := os.Hostname()
		ca, err = newPair(&x509.Certificate{
			Subject:   pkix.Name{CommonName: "pelagos-agent CA " + host},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(caValidity),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			IsCA:     true, BasicConstraintsValid: true,
		}, nil)
		if err == nil {
			err = savePair(dir, "ca", ca)
		}
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
	}
	server, _ := loadPair(dir, "server")
	if !usable(server, ca, now, hosts) {
		tmpl := &x509.Certificate{
			Subject:   pkix.Name{CommonName: "pelagos-agent"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(leafValidity),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if !slices.Contains(tmpl.DNSNames, h) {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		if server, err = newPair(tmpl, ca); err == nil {
			err = savePair(dir, "server", server)
		}
		if err != nil {
			return nil, fmt.Errorf("TLS server certificate: %w", err)
		}
	}
	for _, cc := range []clientCert{adminClient, viewerClient} {
		kp, _ := loadPair(dir, cc.file)
		if usable(kp, ca, now, nil) {
			continue
		}
		kp, err = newPair(&x509.Certificate{
			Subject:   pkix.Name{CommonName: cc.user, Organization: []string{cc.group}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(leafValidity),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, ca)
		if err == nil {
			err = savePair(dir, cc.file, kp)
		}
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s: %w", cc.file, err)
		}
	}
	keyPEM, err := server.keyPEM()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(server.certPEM(), keyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ServerTLS makes or loads the TLS material under the state root and
// returns the configuration of a server listening on addr, as `run
// --api-listen` serves the Kubernetes API.
func ServerTLS(root string, addr net.Addr) (*tls.Config, error) {
	return tlsMaterial(root, serverHosts(addr))
}

// Credentials are what a kubeconfig embeds: the agent's CA and one client
// certificate with its key, all PEM.
type Credentials struct {
	User                string
	CA, ClientCert, Key []byte
}

// Endpoint is the address the running agent recorded for its TCP API.
func Endpoint(root string) (string, error) {
	dir := tlsDir(root)
	b, err := os.ReadFile(filepath.Join(dir, endpointFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("no TCP endpoint recorded in %s: the agent serves the Kubernetes API over TCP only with `run --api-listen ADDRESS` (on by default); start it, or pass --server", dir)
	case err != nil:
		return "", fmt.Errorf("read the agent's endpoint: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ClientCredentials reads the CA and the admin client certificate (the
// viewer's when readOnly) that the agent made under the state root.
func ClientCredentials(root string, readOnly bool) (*Credentials, error) {
	dir := tlsDir(root)
	cc := adminClient
	if readOnly {
		cc = viewerClient
	}
	ca, err := loadPair(dir, "ca")
	if err != nil {
		return nil, fmt.Errorf("the agent's CA (made at the first start with --api-listen): %w", err)
	}
	client, err := loadPair(dir, cc.file)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	key, err := client.keyPEM()
	if err != nil {
		return nil, err
	}
	return &Credentials{User: cc.user, CA: ca.certPEM(), ClientCert: client.certPEM(), Key: key}, nil
}

// serverHosts are the names the server certificate must carry.
func serverHosts(listen net.Addr) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if ta, ok := listen.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !slices.Contains(hosts, ta.IP.String()) {
		hosts = append(hosts, ta.IP.String())
	}
	return hosts
}
