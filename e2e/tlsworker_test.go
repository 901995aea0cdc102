package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/protocol"
)

// tlsAutoConfig is oneBuilderConfig with the worker port over TLS, the
// master's own CA.
var tlsAutoConfig = strings.Replace(oneBuilderConfig, `interface = "127.0.0.1"`, "interface = \"127.0.0.1\"\ntls = \"auto\"", 1)

// workerProc starts gbb-worker with args (its stdout and stderr in a file
// of the test's directory) and returns a channel closed when it exits, and
// the file.
func (e *env) workerProc(tag string, args ...string) (exited <-chan struct{}, cmd *exec.Cmd, out string) {
	e.t.Helper()
	out = filepath.Join(e.Dir, "worker-"+tag+".out")
	logf, err := os.Create(out)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd = exec.Command(e.worker, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	e.t.Cleanup(func() { stopWorkerProcess(cmd.Process, done) })
	return done, cmd, out
}

// TestWorkerTLSAuto: a master with tls = "auto" serves its worker port
// with TLS 1.3 and its own CA's certificate (openssl s_client shows both);
// a worker pinning the CA's fingerprint connects and builds; a worker
// with a wrong fingerprint, and a plaintext one, are refused, and both
// ends say why.
func TestWorkerTLSAuto(t *testing.T) {
	t.Parallel()
	openssl := testdeb.Need(t, "openssl", "openssl")
	e := newEnv(t)
	e.writeConfig(tlsAutoConfig)
	e.startMaster()
	caFile := filepath.Join(e.masterDir, "worker-tls", "ca.pem")
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("%s holds no PEM", caFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := protocol.Fingerprint(ca.Raw)
	waitFor(t, "the master's log to name the CA's fingerprint", 30*time.Second, func() bool {
		return strings.Contains(e.masterLog(), "fingerprint="+fingerprint)
	})
	master := fmt.Sprintf("127.0.0.1:%d", e.WorkerPort)

	// openssl s_client: TLS 1.3, the master's certificate, from its CA.
	cmd := exec.Command(openssl, "s_client", "-connect", master, "-alpn", "h2", "-CAfile", caFile,
		"-verify_ip", "127.0.0.1", "-verify_return_error", "-showcerts")
	cmd.Stdin = strings.NewReader("")
	sout, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, sout)
	}
	for _, want := range []string{"New, TLSv1.3, Cipher is ", "Verify return code: 0 (ok)", "ALPN protocol: h2",
		"i:O = gbb, CN = " + ca.Subject.CommonName} {
		if !strings.Contains(string(sout), want) {
			t.Errorf("openssl s_client's output lacks %q:\n%s", want, sout)
		}
	}
	// The certificate it got is the one in worker-tls/server.pem.
	servedPEM, _ := pem.Decode(sout[max(0, strings.Index(string(sout), "-----BEGIN CERTIFICATE-----")):])
	serverPEM, err := os.ReadFile(filepath.Join(e.masterDir, "worker-tls", "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pem.Decode(serverPEM)
	if servedPEM == nil || want == nil || string(servedPEM.Bytes) != string(want.Bytes) {
		t.Errorf("openssl s_client got another certificate than worker-tls/server.pem's")
	}
	// TLS 1.1 is refused.
	cmd = exec.Command(openssl, "s_client", "-connect", master, "-tls1_1")
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("openssl s_client -tls1_1 connected:\n%s", out)
	}

	// The right fingerprint: connects and builds.
	e.workerProc("good", "-master", master, "-name", "w1", "-password", "secret",
		"-basedir", filepath.Join(e.Dir, "worker-good"), "-tls-fingerprint", fingerprint)
	b := e.waitBuild(e.force("force", 1, "over tls"), 60*time.Second)
	if b.Results == nil || *b.Results != 0 {
		t.Fatalf("build over TLS: %+v", b)
	}
	if !strings.Contains(e.masterLog(), "tls=true") {
		t.Errorf("master.log does not say the worker came over TLS")
	}

	// A wrong fingerprint: the worker exits, saying why; the master logs
	// the failed handshake.
	wrong := "sha256:" + strings.Repeat("ab", 32)
	exited, _, out := e.workerProc("wrong", "-master", master, "-name", "w1", "-password", "secret",
		"-basedir", filepath.Join(e.Dir, "worker-wrong"), "-tls-fingerprint", wrong)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the worker with a wrong fingerprint is still running")
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "does not hold the pinned fingerprint "+wrong) {
		t.Errorf("the worker with a wrong fingerprint does not say why:\n%s", b)
	}
	waitFor(t, "master.log to tell the failed handshake", 30*time.Second, func() bool {
		return strings.Contains(e.masterLog(), "TLS handshake failed: remote error: tls: bad certificate")
	})

	// A plaintext worker: it is told the port speaks TLS and exits, as
	// the TLS worker on a plaintext port does; the master logs a
	// plaintext client on its TLS port.
	exited, _, out = e.workerProc("plain", "-master", master, "-name", "w1", "-password", "secret",
		"-basedir", filepath.Join(e.Dir, "worker-plain"))
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the plaintext worker on the TLS port is still running")
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "the master's worker port speaks TLS") {
		t.Errorf("the plaintext worker does not say why:\n%s", b)
	}
	waitFor(t, "master.log to tell the plaintext client", 30*time.Second, func() bool {
		return strings.Contains(e.masterLog(), "a plaintext gRPC client on the TLS worker port")
	})
}

// TestCreateWorkerTLS: create-worker writes the TLS flags into
// worker.toml, and the worker started from it connects over TLS.
func TestCreateWorkerTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(tlsAutoConfig)
	e.startMaster()
	caFile := filepath.Join(e.masterDir, "worker-tls", "ca.pem")
	wdir := filepath.Join(e.Dir, "worker")
	mustRun(t, e.worker, "create-worker", "-tls-ca", caFile, "-tls-server-name", "localhost", wdir, fmt.Sprintf("127.0.0.1:%d", e.WorkerPort), "w1", "secret")
	toml, err := os.ReadFile(filepath.Join(wdir, "worker.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`tls_ca_file = "` + caFile + `"`, `tls_server_name = "localhost"`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).Match(toml) {
			t.Errorf("worker.toml lacks %s:\n%s", want, toml)
		}
	}
	mustRun(t, e.worker, "start", wdir)
	t.Cleanup(func() { run(t, e.worker, "stop", wdir) })
	b := e.waitBuild(e.force("force", 1, "over tls"), 60*time.Second)
	if b.Results == nil || *b.Results != 0 {
		t.Fatalf("build over TLS: %+v", b)
	}
}
