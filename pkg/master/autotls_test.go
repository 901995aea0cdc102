package master

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
)

// TestEnsureAutoTLS: tls = "auto" makes a CA and a server certificate
// (keys 0600, the chain ending in the CA), keeps them on the next start,
// and issues a new server certificate, from the same CA, for new names or
// near its end.
func TestEnsureAutoTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := config.GRPC{Interface: "127.0.0.1", TLS: config.GRPCTLS{Mode: config.TLSAuto, Names: []string{"ci.example.org"}}}
	fp, err := EnsureAutoTLS(dir, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(dir, config.AutoTLSDir)
	for _, f := range []string{autoCAKey, autoServerKey} {
		fi, err := os.Stat(filepath.Join(tdir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	ca, _, err := loadAutoCA(tdir)
	if err != nil {
		t.Fatal(err)
	}
	if fp != protocol.Fingerprint(ca.Raw) || !strings.HasPrefix(fp, "sha256:") {
		t.Errorf("fingerprint %s is not the CA's %s", fp, protocol.Fingerprint(ca.Raw))
	}
	server := func() *tls.Certificate {
		t.Helper()
		pair, err := config.LoadKeyPair(filepath.Join(tdir, autoServerFile), filepath.Join(tdir, autoServerKey))
		if err != nil {
			t.Fatal(err)
		}
		return &pair
	}
	first := server()
	if len(first.Certificate) != 2 || string(first.Certificate[1]) != string(ca.Raw) {
		t.Errorf("server.pem holds %d certificates, want the leaf then the CA", len(first.Certificate))
	}
	leaf, _ := x509.ParseCertificate(first.Certificate[0])
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	host, _ := os.Hostname()
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "ci.example.org", host} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}

	// The next start keeps both.
	if fp2, err := EnsureAutoTLS(dir, g, nil); err != nil || fp2 != fp {
		t.Fatalf("second EnsureAutoTLS = %s, %v; want the same CA %s", fp2, err, fp)
	}
	if string(server().Certificate[0]) != string(first.Certificate[0]) {
		t.Error("a good server certificate was issued again")
	}
	// A new name: a new server certificate, the same CA.
	g.TLS.Names = append(g.TLS.Names, "192.0.2.7")
	if fp3, err := EnsureAutoTLS(dir, g, nil); err != nil || fp3 != fp {
		t.Fatalf("EnsureAutoTLS with a new name = %s, %v; want the same CA %s", fp3, err, fp)
	}
	leaf, _ = x509.ParseCertificate(server().Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.0.2.7"}); err != nil {
		t.Errorf("the new server certificate lacks the new name: %v", err)
	}
	// Near its end, it is issued again.
	if why := autoServerStale(tdir, ca, autoNames(g), time.Now().Add(autoServerLife-autoRenew+time.Hour)); !strings.Contains(why, "it ends") {
		t.Errorf("a server certificate within %s of its end: stale = %q", autoRenew, why)
	}
}

// writeLeaf writes a certificate for 127.0.0.1 signed by ca (with the
// chain), valid until notAfter, and its key.
func writeLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, notAfter time.Time, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKeyPair(certFile, keyFile, [][]byte{der, ca.Raw}, key); err != nil {
		t.Fatal(err)
	}
}

// TestReconfigRotatesWorkerCert: a reconfig reads new certificate files:
// the connected worker stays, a new connection gets the new certificate,
// and one that ends within 14 days is warned about in the log.
func TestReconfigRotatesWorkerCert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A CA of the test's (EnsureAutoTLS's, in another directory).
	caDir := t.TempDir()
	if _, err := EnsureAutoTLS(caDir, config.GRPC{TLS: config.GRPCTLS{Mode: config.TLSAuto}}, nil); err != nil {
		t.Fatal(err)
	}
	ca, caKey, err := loadAutoCA(filepath.Join(caDir, config.AutoTLSDir))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "port.pem"), filepath.Join(dir, "port.key")
	writeLeaf(t, ca, caKey, "first", time.Now().Add(90*24*time.Hour), certFile, keyFile)
	toml := `
[protocols.grpc]
port = 0
interface = "127.0.0.1"
tls_cert_file = "port.pem"
tls_key_file = "port.key"

[www]
port = 0
interface = "127.0.0.1"

[[workers]]
name = "w1"
password = "pw"
`
	path := filepath.Join(dir, "master.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := New(dir, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(a Addrs) { addrs <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	var a Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	workerAddr := a.Worker.String()

	tlsCfg, err := protocol.ClientTLS{Fingerprint: protocol.Fingerprint(ca.Raw), ServerName: "localhost"}.Config(workerAddr, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	attempts := make(chan error, 10)
	w := protocol.NewClient(protocol.ClientConfig{Master: workerAddr, Name: "w1", Password: "pw", TLS: tlsCfg,
		Executor: nopExecutor{}, OnAttempt: func(err error) { attempts <- err }})
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-wdone })
	select {
	case err := <-attempts:
		if err != nil {
			t.Fatalf("the worker's first attempt: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not connect")
	}

	peerCN := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", workerAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := peerCN(); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}
	// The API and the workers page know when it ends; 90 days away, the
	// page warns of nothing.
	webGet := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + a.Web.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	notAfter := func() int64 {
		t.Helper()
		var r struct {
			Masters []struct {
				NotAfter *int64 `json:"worker_tls_not_after"`
			}
		}
		if err := json.Unmarshal([]byte(webGet("/api/v2/masters")), &r); err != nil || len(r.Masters) != 1 || r.Masters[0].NotAfter == nil {
			t.Fatalf("/api/v2/masters: %+v, %v", r, err)
		}
		return *r.Masters[0].NotAfter
	}
	if d := time.Until(time.Unix(notAfter(), 0)); d < 89*24*time.Hour {
		t.Errorf("worker_tls_not_after is %s away, want 90 days", d)
	}
	if strings.Contains(webGet("/workers"), "cert-ending") {
		t.Errorf("the workers page warns of a certificate 90 days from its end")
	}
	writeLeaf(t, ca, caKey, "second", time.Now().Add(5*24*time.Hour), certFile, keyFile)
	if err := m.Reconfig(path); err != nil {
		t.Fatalf("Reconfig: %v", err)
	}
	if cn := peerCN(); cn != "second" {
		t.Errorf("after the reconfig, served %q, want second", cn)
	}
	if !strings.Contains(logs.String(), MsgCertExpiring) {
		t.Errorf("a certificate that ends in 5 days is not warned about:\n%s", logs.String())
	}
	if d := time.Until(time.Unix(notAfter(), 0)); d > 5*24*time.Hour {
		t.Errorf("after the reconfig, worker_tls_not_after is %s away, want 5 days", d)
	}
	if page := webGet("/workers"); !strings.Contains(page, `class="warning cert-ending"`) || !strings.Contains(page, "gbb-master reconfig") {
		t.Errorf("the workers page does not warn of the certificate that ends in 5 days:\n%s", page)
	}
	// The worker stayed: no new attempt, no detach.
	select {
	case err := <-attempts:
		t.Errorf("the worker connected again (%v): the reconfig dropped it", err)
	default:
	}
	if strings.Contains(logs.String(), "worker detached") {
		t.Errorf("the worker was detached by the reconfig:\n%s", logs.String())
	}
	// From files to tls = "auto", TLS stays on: a new certificate source,
	// no restart; the next connection gets the master's own certificate.
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(toml, "tls_cert_file = \"port.pem\"\ntls_key_file = \"port.key\"\n", "tls = \"auto\"\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconfig(path); err != nil {
		t.Fatalf("Reconfig from tls_cert_file to tls = \"auto\": %v, want done", err)
	}
	if cn := peerCN(); cn == "second" || cn == "first" {
		t.Errorf("after the reconfig to tls = \"auto\", served %q, want the master's own certificate", cn)
	}
	// Turning TLS off needs a restart, and says so.
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(toml, "tls_cert_file = \"port.pem\"\ntls_key_file = \"port.key\"\n", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconfig(path); err == nil || !strings.Contains(err.Error(), "turning the worker port's TLS on or off: needs a restart") {
		t.Errorf("Reconfig turning TLS off: %v, want: turning the worker port's TLS on or off: needs a restart", err)
	}
}

// nopExecutor runs nothing: the test only connects.
type nopExecutor struct{}

func (nopExecutor) Run(context.Context, protocol.Command, func(protocol.Output)) protocol.Result {
	return protocol.Result{}
}

// TestExpiredWorkerCertLoud: a worker port certificate past its end is an
// error in master.log, saying that workers refuse it, not the warning of
// one that ends soon.
func TestExpiredWorkerCertLoud(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caDir := t.TempDir()
	if _, err := EnsureAutoTLS(caDir, config.GRPC{TLS: config.GRPCTLS{Mode: config.TLSAuto}}, nil); err != nil {
		t.Fatal(err)
	}
	ca, caKey, err := loadAutoCA(filepath.Join(caDir, config.AutoTLSDir))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "port.pem"), filepath.Join(dir, "port.key")
	writeLeaf(t, ca, caKey, "old", time.Now().Add(-time.Minute), certFile, keyFile)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := newWorkerTLS(dir, config.GRPC{TLS: config.GRPCTLS{Mode: config.TLSFiles, CertFile: certFile, KeyFile: keyFile}}, log, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\""+MsgCertExpired) || strings.Contains(logs.String(), MsgCertExpiring) {
		t.Errorf("an expired certificate logged:\n%s\nwant the error %q", logs.String(), MsgCertExpired)
	}
}
