package protocol

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCert is a certificate made by the test, with its key.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// certSpec says what makeCert makes.
type certSpec struct {
	cn       string
	names    []string // DNS names and IP addresses
	ca       bool
	client   bool // a client certificate (ExtKeyUsageClientAuth)
	from, to time.Time
}

// makeCert makes a certificate for spec, signed by parent (self-signed
// when nil).
func makeCert(t *testing.T, spec certSpec, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if spec.from.IsZero() {
		spec.from = time.Now().Add(-time.Hour)
	}
	if spec.to.IsZero() {
		spec.to = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: spec.cn},
		NotBefore:    spec.from,
		NotAfter:     spec.to,
	}
	switch {
	case spec.ca:
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	case spec.client:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	for _, n := range spec.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key}
}

// pair is c (and the chain after it) as a tls.Certificate.
func (c *testCert) pair(chain ...*testCert) *tls.Certificate {
	p := &tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: c.key, Leaf: c.cert}
	for _, m := range chain {
		p.Certificate = append(p.Certificate, m.cert.Raw)
	}
	return p
}

// writePEM writes c's certificate (and, with key, its key) to dir and
// returns the files.
func (c *testCert) writePEM(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// startTLSMaster is startMaster over TLS, serving what state holds.
func startTLSMaster(t *testing.T, state *atomic.Pointer[ServerTLSState]) *master {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &master{addr: l.Addr().String(), lis: &killListener{Listener: l}, attach: make(chan *WorkerConn, 10), log: &syncBuffer{}, stopped: make(chan struct{})}
	s := NewServer(ServerConfig{
		Password: func(name string) (string, bool) { return "pw", name != "nobody" },
		Attach:   func(c *WorkerConn) { m.attach <- c },
		Logger:   slog.New(slog.NewTextHandler(m.log, nil)),
		TLS:      NewServerTLS(func() ServerTLSState { return *state.Load() }),
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(m.stopped)
		if err := s.Serve(ctx, m.lis); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	m.stop = func() { cancel(); <-m.stopped }
	t.Cleanup(m.stop)
	return m
}

// runTLSWorker runs a worker with tc against addr until it attaches (it
// then stays until the test ends; nil is returned) or Run returns (its
// error is returned).
func runTLSWorker(t *testing.T, m *master, name, password string, tc ClientTLS) (*WorkerConn, error) {
	t.Helper()
	cfg, err := tc.Config(m.addr, os.ReadFile)
	if err != nil {
		t.Fatalf("ClientTLS.Config: %v", err)
	}
	c := NewClient(ClientConfig{Master: m.addr, Name: name, Password: password, TLS: cfg, Executor: newTestExecutor(),
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case wc := <-m.attach:
		return wc, nil
	case err := <-done:
		done <- err
		return nil, err
	case <-time.After(20 * time.Second):
		t.Fatal("the worker neither attached nor gave up")
		return nil, nil
	}
}

// The worker link over TLS, with certificates made by the test: a worker
// that can verify the master connects and runs a command; one that
// cannot refuses to connect, and both ends say why.
func TestTLSWorkerLink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := makeCert(t, certSpec{cn: "test CA", ca: true}, nil)
	otherCA := makeCert(t, certSpec{cn: "other CA", ca: true}, nil)
	good := makeCert(t, certSpec{cn: "master", names: []string{"localhost", "127.0.0.1"}}, ca)
	expired := makeCert(t, certSpec{cn: "master", names: []string{"127.0.0.1"}, from: time.Now().Add(-48 * time.Hour), to: time.Now().Add(-24 * time.Hour)}, ca)
	wrongName := makeCert(t, certSpec{cn: "master", names: []string{"elsewhere.example", "10.9.9.9"}}, ca)
	caFile, _ := ca.writePEM(t, dir, "ca")
	otherCAFile, _ := otherCA.writePEM(t, dir, "other-ca")

	tests := []struct {
		name   string
		served *tls.Certificate
		tc     ClientTLS
		worker string // in the worker's error; "" means it connects
		master string // in the master's log
	}{
		{name: "pinned CA", served: good.pair(ca), tc: ClientTLS{Fingerprint: Fingerprint(ca.cert.Raw)}},
		{name: "pinned leaf", served: good.pair(ca), tc: ClientTLS{Fingerprint: Fingerprint(good.cert.Raw)}},
		{name: "CA file", served: good.pair(), tc: ClientTLS{CAFile: caFile}},
		{name: "CA file, server name", served: wrongName.pair(), tc: ClientTLS{CAFile: caFile, ServerName: "elsewhere.example"}},
		{name: "wrong fingerprint", served: good.pair(ca), tc: ClientTLS{Fingerprint: Fingerprint(otherCA.cert.Raw)},
			worker: "does not hold the pinned fingerprint " + Fingerprint(otherCA.cert.Raw), master: "TLS handshake failed: remote error: tls: bad certificate"},
		{name: "other CA file", served: good.pair(), tc: ClientTLS{CAFile: otherCAFile},
			worker: "certificate signed by unknown authority", master: "TLS handshake failed: remote error: tls: bad certificate"},
		{name: "expired", served: expired.pair(ca), tc: ClientTLS{Fingerprint: Fingerprint(ca.cert.Raw)},
			worker: "certificate has expired", master: "TLS handshake failed: remote error: tls: bad certificate"},
		{name: "expired, CA file", served: expired.pair(), tc: ClientTLS{CAFile: caFile},
			worker: "certificate has expired", master: "TLS handshake failed: remote error: tls: bad certificate"},
		{name: "wrong name", served: wrongName.pair(ca), tc: ClientTLS{Fingerprint: Fingerprint(ca.cert.Raw)},
			worker: "certificate is valid for 10.9.9.9, not 127.0.0.1", master: "TLS handshake failed: remote error: tls: bad certificate"},
		{name: "wrong name, CA file", served: wrongName.pair(), tc: ClientTLS{CAFile: caFile},
			worker: "certificate is valid for 10.9.9.9, not 127.0.0.1", master: "TLS handshake failed: remote error: tls: bad certificate"},
		{name: "plaintext worker", served: good.pair(ca), tc: ClientTLS{},
			worker: "the master's worker port speaks TLS", master: "a plaintext gRPC client on the TLS worker port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var state atomic.Pointer[ServerTLSState]
			state.Store(&ServerTLSState{Cert: tt.served})
			m := startTLSMaster(t, &state)
			if tt.worker == "" {
				c, err := runTLSWorker(t, m, "w1", "pw", tt.tc)
				if err != nil {
					t.Fatalf("worker: %v", err)
				}
				if res, out, err := collect(t, t.Context(), c, shell("echo", "over", "tls")); err != nil || res.ExitCode != 0 || len(out) != 1 {
					t.Errorf("Run over TLS = %+v, %v, %v", res, out, err)
				}
				if !strings.Contains(m.log.String(), "tls=true") {
					t.Errorf("the master's log does not say the worker came over TLS:\n%s", m.log)
				}
				return
			}
			if tt.tc.Enabled() {
				_, err := runTLSWorker(t, m, "w1", "pw", tt.tc)
				if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), tt.worker) {
					t.Errorf("worker: %v, want ErrTLS saying %q", err, tt.worker)
				}
			} else {
				// A plaintext worker is told, in HTTP/2, that the port
				// speaks TLS: it gives up before a first welcome, as a
				// TLS worker on a plaintext port does, saying why.
				c := NewClient(ClientConfig{Master: m.addr, Name: "w1", Password: "pw", Executor: newTestExecutor(),
					MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
				attempts := make(chan error, 100)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				cc := c.cfg
				cc.OnAttempt = func(err error) {
					select {
					case attempts <- err:
					default:
					}
				}
				c = NewClient(cc)
				go func() { done <- c.Run(ctx) }()
				defer func() { cancel(); <-done }()
				select {
				case err := <-attempts:
					if err == nil || !strings.Contains(err.Error(), tt.worker) {
						t.Errorf("plaintext worker's attempt: %v, want it to say %q", err, tt.worker)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("no attempt")
				}
				select {
				case err := <-done:
					if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), tt.worker) {
						t.Errorf("plaintext worker: Run = %v, want ErrTLS saying %q", err, tt.worker)
					}
					done <- err
				case <-time.After(20 * time.Second):
					t.Fatal("the plaintext worker keeps retrying")
				}
			}
			waitLog(t, m, "worker port: dropped a connection before its worker spoke", tt.master)
		})
	}
}

// A worker whose TLS client certificate (CN its name) the master's
// client CAs verify logs in without a password; one whose certificate
// names another worker must prove a password.
func TestTLSClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := makeCert(t, certSpec{cn: "test CA", ca: true}, nil)
	workersCA := makeCert(t, certSpec{cn: "workers CA", ca: true}, nil)
	server := makeCert(t, certSpec{cn: "master", names: []string{"127.0.0.1"}}, ca)
	w1 := makeCert(t, certSpec{cn: "w1", client: true}, workersCA)
	w1Cert, w1Key := w1.writePEM(t, dir, "w1")
	pool := x509.NewCertPool()
	pool.AddCert(workersCA.cert)
	var state atomic.Pointer[ServerTLSState]
	state.Store(&ServerTLSState{Cert: server.pair(ca), ClientCAs: pool})
	m := startTLSMaster(t, &state)
	pin := Fingerprint(ca.cert.Raw)

	if _, err := runTLSWorker(t, m, "w1", "", ClientTLS{Fingerprint: pin, CertFile: w1Cert, KeyFile: w1Key}); err != nil {
		t.Fatalf("w1 with its certificate and no password: %v", err)
	}
	waitLog(t, m, "worker logged in with its client certificate", "worker=w1")

	// w1's certificate does not log in w2: it is asked for a password,
	// and has none.
	_, err := runTLSWorker(t, m, "w2", "", ClientTLS{Fingerprint: pin, CertFile: w1Cert, KeyFile: w1Key})
	if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "asks for a password") {
		t.Errorf("w2 with w1's certificate: %v, want ErrAuthFailed: asks for a password", err)
	}
	// The master's log says why the certificate did not log it in.
	waitLog(t, m, "worker's client certificate not accepted for its name", "worker=w2", "certificate_cn=w1")
	// With its password, w2 logs in over the same TLS.
	if _, err := runTLSWorker(t, m, "w2", "pw", ClientTLS{Fingerprint: pin, CertFile: w1Cert, KeyFile: w1Key}); err != nil {
		t.Errorf("w2 with its password: %v", err)
	}
	// An expired client certificate cannot log in however often the
	// worker tries: it gives up before a first welcome, saying why.
	old := makeCert(t, certSpec{cn: "w3", client: true, from: time.Now().Add(-48 * time.Hour), to: time.Now().Add(-24 * time.Hour)}, workersCA)
	oldCert, oldKey := old.writePEM(t, dir, "w3")
	_, err = runTLSWorker(t, m, "w3", "pw", ClientTLS{Fingerprint: pin, CertFile: oldCert, KeyFile: oldKey})
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "refused the worker's TLS handshake") || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("w3 with an expired client certificate: %v, want ErrTLS: the master refused the worker's TLS handshake, naming the client certificate", err)
	}
}

// Certificate rotation: the state the server reads is swapped; the
// connected worker stays, a new connection gets the new certificate.
func TestTLSRotation(t *testing.T) {
	t.Parallel()
	ca := makeCert(t, certSpec{cn: "test CA", ca: true}, nil)
	first := makeCert(t, certSpec{cn: "first", names: []string{"127.0.0.1"}}, ca)
	second := makeCert(t, certSpec{cn: "second", names: []string{"127.0.0.1"}}, ca)
	var state atomic.Pointer[ServerTLSState]
	state.Store(&ServerTLSState{Cert: first.pair(ca)})
	m := startTLSMaster(t, &state)
	c, err := runTLSWorker(t, m, "w1", "pw", ClientTLS{Fingerprint: Fingerprint(ca.cert.Raw)})
	if err != nil {
		t.Fatal(err)
	}
	state.Store(&ServerTLSState{Cert: second.pair(ca)})
	conn, err := tls.Dial("tcp", m.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Errorf("a new connection got the certificate %q, want second", cn)
	}
	conn.Close()
	if res, _, err := collect(t, t.Context(), c, shell("echo", "still")); err != nil || res.ExitCode != 0 {
		t.Errorf("the worker connected before the swap: %+v, %v", res, err)
	}
	select {
	case <-c.Done():
		t.Errorf("the worker's connection ended: %v", c.Err())
	default:
	}
}

// A worker over TLS to a plaintext port says the port does not speak
// TLS.
func TestTLSWorkerToPlaintextPort(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	_, err := runTLSWorker(t, m, "w1", "pw", ClientTLS{Fingerprint: "sha256:" + strings.Repeat("00", 32)})
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Errorf("TLS worker to a plaintext port: %v, want ErrTLS: does not speak TLS", err)
	}
	waitLog(t, m, "worker port: dropped a connection before its worker spoke", "a TLS client on the plaintext worker port")
}

func TestParseFingerprint(t *testing.T) {
	t.Parallel()
	want := strings.Repeat("ab", 32)
	for _, s := range []string{"sha256:" + want, "SHA256:" + strings.ToUpper(want), "sha256:" + strings.TrimSuffix(strings.Repeat("ab:", 32), ":")} {
		b, err := ParseFingerprint(s)
		if err != nil || len(b) != 32 || b[0] != 0xab {
			t.Errorf("ParseFingerprint(%q) = %x, %v", s, b, err)
		}
	}
	for _, s := range []string{"", want, "sha1:" + want, "sha256:abcd", "sha256:" + strings.Repeat("zz", 32)} {
		if _, err := ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", s)
		}
	}
}

// TestChannelBinding: a man in the middle that the worker trusts (its CA
// pinned by mistake) relays the login between its own TLS session with
// the worker and its TLS session with the master: the worker's proof is
// bound to the first, the master checks it against the second, and the
// login is refused. The worker is told, and the master logs the refusal.
func TestChannelBinding(t *testing.T) {
	t.Parallel()
	ca := makeCert(t, certSpec{cn: "test CA", ca: true}, nil)
	server := makeCert(t, certSpec{cn: "master", names: []string{"127.0.0.1"}}, ca)
	var state atomic.Pointer[ServerTLSState]
	state.Store(&ServerTLSState{Cert: server.pair(ca)})
	m := startTLSMaster(t, &state)

	// The man in the middle: its own CA and certificate for 127.0.0.1.
	mitmCA := makeCert(t, certSpec{cn: "mitm CA", ca: true}, nil)
	mitmCert := makeCert(t, certSpec{cn: "mitm", names: []string{"127.0.0.1"}}, mitmCA)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*mitmCert.pair(mitmCA)}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	var relays sync.WaitGroup
	t.Cleanup(func() { lis.Close(); relays.Wait() })
	relays.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			relays.Go(func() {
				defer c.Close()
				up, err := tls.Dial("tcp", m.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() { io.Copy(c, up); c.Close(); close(done) }()
				io.Copy(up, c)
				up.Close()
				<-done
			})
		}
	})
	mitm := &master{addr: lis.Addr().String(), attach: m.attach}
	_, err = runTLSWorker(t, mitm, "w1", "pw", ClientTLS{Fingerprint: Fingerprint(mitmCA.cert.Raw)})
	if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "wrong name or password") {
		t.Errorf("the worker through the man in the middle: %v, want ErrAuthFailed: wrong name or password", err)
	}
	waitLog(t, m, "worker refused: wrong name or password", "known_name=true")
}
