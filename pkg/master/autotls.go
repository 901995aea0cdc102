package master

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
)

// tls = "auto": the master's own CA and the worker port's certificate,
// in BASEDIR/worker-tls (config.AutoTLSDir), keys 0600:
//
//	ca.pem, ca.key          the CA: ECDSA P-256, valid 10 years; workers
//	                        pin its SHA-256 fingerprint (-tls-fingerprint)
//	                        or trust ca.pem (-tls-ca)
//	server.pem, server.key  the port's certificate, signed by the CA,
//	                        followed by ca.pem (so a worker can pin the CA);
//	                        valid 1 year, re-issued at start or reconfig
//	                        when it has less than autoRenew left or lacks
//	                        one of the names it should hold
const (
	autoCAFile     = "ca.pem"
	autoCAKey      = "ca.key"
	autoServerFile = "server.pem"
	autoServerKey  = "server.key"
	autoCALife     = 10 * 365 * 24 * time.Hour
	autoServerLife = 365 * 24 * time.Hour
	autoRenew      = 30 * 24 * time.Hour
)

// autoNames are the names the auto server certificate holds: the host's
// name, localhost, the loopback addresses, the listen interface when it
// is one address, and tls_names.
func autoNames(g config.GRPC) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	if ip := net.ParseIP(g.Interface); ip != nil && !ip.IsUnspecified() {
		names = append(names, ip.String())
	}
	names = append(names, g.TLS.Names...)
	slices.Sort(names)
	return slices.Compact(names)
}

// AutoCAExists reports whether basedir holds tls = "auto"'s CA, which
// EnsureAutoTLS then keeps.
func AutoCAExists(basedir string) bool {
	_, err := os.Stat(filepath.Join(basedir, config.AutoTLSDir, autoCAFile))
	return err == nil
}

// EnsureAutoTLS makes, in basedir, tls = "auto"'s CA unless it exists, and
// the server certificate for g's names unless a good one exists (see
// autoRenew); it returns the CA's fingerprint ("sha256:…"). log (nil:
// discard) tells what it made.
func EnsureAutoTLS(basedir string, g config.GRPC, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(basedir, config.AutoTLSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("worker tls: %w", err)
	}
	ca, caKey, err := loadAutoCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		ca, caKey, err = makeAutoCA(dir)
		if err == nil {
			log.Info("worker tls: made the master's CA", "file", filepath.Join(dir, autoCAFile), "fingerprint", protocol.Fingerprint(ca.Raw))
		}
	}
	if err != nil {
		return "", fmt.Errorf("worker tls: %w", err)
	}
	names := autoNames(g)
	if why := autoServerStale(dir, ca, names, time.Now()); why != "" {
		if err := makeAutoServer(dir, ca, caKey, names); err != nil {
			return "", fmt.Errorf("worker tls: %w", err)
		}
		log.Info("worker tls: issued the worker port's certificate", "why", why, "names", names, "valid_for", autoServerLife)
	}
	return protocol.Fingerprint(ca.Raw), nil
}

func loadAutoCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := config.LoadKeyPair(filepath.Join(dir, autoCAFile), filepath.Join(dir, autoCAKey))
	if err != nil {
		if _, serr := os.Stat(filepath.Join(dir, autoCAFile)); errors.Is(serr, fs.ErrNotExist) {
			return nil, nil, serr
		}
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not an ECDSA key", filepath.Join(dir, autoCAKey))
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func makeAutoCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "gbb master CA " + host, Organization: []string{"gbb"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(autoCALife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKeyPair(filepath.Join(dir, autoCAFile), filepath.Join(dir, autoCAKey), [][]byte{der}, key); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// autoServerStale says why the server certificate in dir must be issued
// again ("" when it is good): missing, not from ca, near its end, or
// lacking one of names.
func autoServerStale(dir string, ca *x509.Certificate, names []string, now time.Time) string {
	pair, err := config.LoadKeyPair(filepath.Join(dir, autoServerFile), filepath.Join(dir, autoServerKey))
	if err != nil {
		return fmt.Sprintf("none usable (%v)", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err.Error()
	}
	if leaf.CheckSignatureFrom(ca) != nil {
		return "not signed by the CA"
	}
	if leaf.NotAfter.Sub(now) < autoRenew {
		return fmt.Sprintf("it ends %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return fmt.Sprintf("it lacks the name %s", n)
		}
	}
	return ""
}

func makeAutoServer(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "gbb worker port " + host, Organization: []string{"gbb"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(autoServerLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writeKeyPair(filepath.Join(dir, autoServerFile), filepath.Join(dir, autoServerKey), [][]byte{der, ca.Raw}, key)
}

// writeKeyPair writes the certificates (PEM, 0644) and the key (PEM,
// 0600), each to a temporary file renamed into place, so that a master
// reading them meanwhile sees the old pair or the new one.
func writeKeyPair(certFile, keyFile string, ders [][]byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	var certPEM []byte
	for _, d := range ders {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, certPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// expiryWarning is how long before its end a worker port certificate is
// warned about in master.log.
const expiryWarning = 14 * 24 * time.Hour

// MsgCertExpiring is what master.log says of a worker port certificate
// that ends within 14 days.
const MsgCertExpiring = "worker tls: the worker port's certificate expires soon: renew it, then gbb-master reconfig"

// MsgCertExpired is what master.log says, as an error, of a worker port
// certificate past its end.
const MsgCertExpired = "worker tls: the worker port's certificate HAS EXPIRED: workers refuse to connect until it is renewed (renew it, then gbb-master reconfig)"

// workerTLS is the worker port's TLS material, swapped by a reconfig:
// new connections get the new certificate, connected workers stay.
type workerTLS struct {
	basedir string
	log     *slog.Logger
	// loaded, when not nil, is told when each loaded certificate ends
	// (the store, for the API and the workers page).
	loaded func(notAfter time.Time)
	cur    atomic.Pointer[loadedTLS]
}

// loadedTLS is what one load read.
type loadedTLS struct {
	state protocol.ServerTLSState
	leaf  *x509.Certificate
	file  string // where the certificate came from, for the log
}

// newWorkerTLS loads g's TLS material (making tls = "auto"'s when
// missing); it returns nil when tls is off.
func newWorkerTLS(basedir string, g config.GRPC, log *slog.Logger, loaded func(notAfter time.Time)) (*workerTLS, error) {
	if !g.TLS.Enabled() {
		if loaded != nil {
			loaded(time.Time{})
		}
		return nil, nil
	}
	w := &workerTLS{basedir: basedir, log: log, loaded: loaded}
	if err := w.load(g); err != nil {
		return nil, err
	}
	return w, nil
}

// config is protocol.ServerConfig.TLS: nil when w is (tls is off).
func (w *workerTLS) config() *tls.Config {
	if w == nil {
		return nil
	}
	return protocol.NewServerTLS(func() protocol.ServerTLSState { return w.cur.Load().state })
}

// load reads g's files again (a reconfig: certificate rotation) and
// swaps them in; on error nothing changes.
func (w *workerTLS) load(g config.GRPC) error {
	certFile, keyFile := g.TLS.CertFile, g.TLS.KeyFile
	if g.TLS.Mode == config.TLSAuto {
		fp, err := EnsureAutoTLS(w.basedir, g, w.log)
		if err != nil {
			return err
		}
		dir := filepath.Join(w.basedir, config.AutoTLSDir)
		certFile, keyFile = filepath.Join(dir, autoServerFile), filepath.Join(dir, autoServerKey)
		w.log.Info("worker tls: serving the worker port with the master's own CA; workers pin it with -tls-fingerprint", "fingerprint", fp)
	}
	pair, err := config.LoadKeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("worker tls: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("worker tls: %s: %w", certFile, err)
	}
	l := &loadedTLS{state: protocol.ServerTLSState{Cert: &pair}, leaf: leaf, file: certFile}
	if g.TLS.ClientCAFile != "" {
		pool, err := config.LoadCAFile(g.TLS.ClientCAFile)
		if err != nil {
			return fmt.Errorf("worker tls: client_ca_file: %w", err)
		}
		l.state.ClientCAs = pool
	}
	w.cur.Store(l)
	w.log.Info("worker tls: certificate loaded", "file", certFile, "subject", leaf.Subject.String(),
		"names", append(leaf.DNSNames, ipStrings(leaf.IPAddresses)...), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"client_certificates", l.state.ClientCAs != nil)
	w.checkExpiry(time.Now())
	if w.loaded != nil {
		w.loaded(leaf.NotAfter)
	}
	return nil
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// checkExpiry warns in the log when the certificate ends within
// expiryWarning (or has ended).
func (w *workerTLS) checkExpiry(now time.Time) {
	l := w.cur.Load()
	left := l.leaf.NotAfter.Sub(now)
	if left <= 0 {
		w.log.Error(MsgCertExpired, "file", l.file, "not_after", l.leaf.NotAfter.UTC().Format(time.RFC3339),
			"ago", (-left).Round(time.Minute))
		return
	}
	if left < expiryWarning {
		w.log.Warn(MsgCertExpiring, "file", l.file, "not_after", l.leaf.NotAfter.UTC().Format(time.RFC3339),
			"left", left.Round(time.Minute))
	}
}

// runExpiryCheck checks the certificate's end every 12 hours until ctx
// is done.
func (w *workerTLS) runExpiryCheck(ctx context.Context) error {
	t := time.NewTicker(12 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			w.checkExpiry(now)
		}
	}
}
