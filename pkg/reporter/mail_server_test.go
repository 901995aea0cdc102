package reporter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The SMTP servers the mail tests share: mailpit, pinned in
// testdata/mail/mailpit/go.mod (a module of its own, so that its
// dependencies stay out of gbb's), built and started once per package by
// the first test that asks and stopped by TestMain. Each test tells its
// mails from the others' by their Message-ID.
const (
	mailUser     = "gbb"
	mailPassword = "Pa55-w0rd-s3cret"
)

// mailpit is one running mailpit.
type mailpit struct {
	name string
	host string // its SMTP address's host
	port int    // its SMTP port
	api  string // its HTTP API's root, http://127.0.0.1:PORT/api/v1/
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// mailServers are the mailpits the tests use.
type mailServers struct {
	dir string
	// StartTLS requires STARTTLS, then AUTH (mailUser, mailPassword).
	StartTLS *mailpit
	// SMTPS speaks TLS from the first byte, then requires AUTH.
	SMTPS *mailpit
	// Plain, on 127.0.0.2, offers no TLS; it offers AUTH in clear and
	// takes any password or none (as a badly set relay would), at most 2
	// recipients per message (452 for more) and only addresses
	// @example.com or @example.org (550 for others).
	Plain *mailpit
	// Roots trusts the servers' certificate (for 127.0.0.1, 127.0.0.2
	// and localhost).
	Roots *x509.CertPool
}

var mailSrv struct {
	once sync.Once
	s    *mailServers
	err  error
}

// mailServer returns the package's SMTP servers, starting them on the
// first call.
func mailServer(t *testing.T) *mailServers {
	t.Helper()
	mailSrv.once.Do(func() {
		mailSrv.s, mailSrv.err = startMailServers()
	})
	if mailSrv.err != nil {
		t.Fatalf("start the SMTP servers (mailpit): %v", mailSrv.err)
	}
	return mailSrv.s
}

// stopMailServer stops the servers mailServer started, if any.
func stopMailServer() {
	s := mailSrv.s
	if s == nil {
		return
	}
	for _, m := range []*mailpit{s.StartTLS, s.SMTPS, s.Plain} {
		if m != nil {
			m.stop()
		}
	}
	os.RemoveAll(s.dir)
}

func startMailServers() (_ *mailServers, err error) {
	dir, err := os.MkdirTemp("", "gbb-mailpit-")
	if err != nil {
		return nil, err
	}
	s := &mailServers{dir: dir}
	defer func() {
		if err != nil {
			mailSrv.s = s
			stopMailServer()
			mailSrv.s = nil
		}
	}()
	bin := filepath.Join(dir, "mailpit")
	build := exec.Command("go", "build", "-o", bin, "github.com/axllent/mailpit")
	build.Dir = filepath.Join("testdata", "mail", "mailpit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build mailpit: %v\n%s", err, out)
	}
	cert, key, roots, err := writeTestCert(dir)
	if err != nil {
		return nil, err
	}
	s.Roots = roots
	auth := filepath.Join(dir, "smtp-auth")
	if err := os.WriteFile(auth, []byte(mailUser+":"+mailPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	tlsFlags := []string{"--smtp-tls-cert", cert, "--smtp-tls-key", key, "--smtp-auth-file", auth}
	if s.StartTLS, err = startMailpit(bin, dir, "starttls", "127.0.0.1", append(tlsFlags, "--smtp-require-starttls")...); err != nil {
		return nil, err
	}
	if s.SMTPS, err = startMailpit(bin, dir, "smtps", "127.0.0.1", append(tlsFlags, "--smtp-require-tls")...); err != nil {
		return nil, err
	}
	if s.Plain, err = startMailpit(bin, dir, "plain", "127.0.0.2",
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
		"--smtp-max-recipients", "2", "--smtp-allowed-recipients", `@example\.(com|org)$`); err != nil {
		return nil, err
	}
	return s, nil
}

// startMailpit starts bin with its SMTP server on host and its API on
// 127.0.0.1, on free ports, and waits until both answer. A port taken
// between finding it free and mailpit binding it is tried again.
func startMailpit(bin, dir, name, host string, flags ...string) (*mailpit, error) {
	var last error
	for range 5 {
		smtpPort, err := freePort(host)
		if err != nil {
			return nil, err
		}
		apiPort, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		m := &mailpit{name: name, host: host, port: smtpPort, api: fmt.Sprintf("http://127.0.0.1:%d/api/v1/", apiPort), exit: make(chan struct{})}
		args := append([]string{
			"--smtp", net.JoinHostPort(host, strconv.Itoa(smtpPort)),
			"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort)),
			"--database", filepath.Join(dir, name+".db"),
			"--smtp-disable-rdns", "--disable-version-check", "--quiet",
		}, flags...)
		m.cmd = exec.Command(bin, args...)
		dieWithTest(m.cmd)
		// Only our flags: no MP_* of the environment.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "MP_") {
				m.cmd.Env = append(m.cmd.Env, kv)
			}
		}
		out, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		m.cmd.Stdout, m.cmd.Stderr = out, out
		if err := m.cmd.Start(); err != nil {
			out.Close()
			return nil, fmt.Errorf("start mailpit %s: %w", name, err)
		}
		go func() {
			m.cmd.Wait()
			out.Close()
			close(m.exit)
		}()
		if err := m.waitReady(); err != nil {
			m.stop()
			log, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			last = fmt.Errorf("mailpit %s: %w\n%s", name, err, log)
			continue
		}
		return m, nil
	}
	return nil, last
}

// waitReady waits until m's API and SMTP port answer, or m exits.
func (m *mailpit) waitReady() error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-m.exit:
			return errors.New("exited before it was ready")
		default:
		}
		resp, err := http.Get(strings.TrimSuffix(m.api, "api/v1/") + "readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if c, err := net.DialTimeout("tcp", net.JoinHostPort(m.host, strconv.Itoa(m.port)), time.Second); err == nil {
					c.Close()
					return nil
				}
			}
		}
		select {
		case <-m.exit:
			return errors.New("exited before it was ready")
		case <-time.After(50 * time.Millisecond): // polling a process we do not own
		}
	}
	return errors.New("not ready after a minute")
}

func (m *mailpit) stop() {
	m.cmd.Process.Kill()
	<-m.exit
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeTestCert writes a CA's certificate for 127.0.0.1, 127.0.0.2 and
// localhost, and its key, into dir; roots trusts it.
func writeTestCert(dir string) (cert, key string, roots *x509.CertPool, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gbb test relay"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", nil, err
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return "", "", nil, err
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(c)
	return cert, key, roots, nil
}

// deps returns the Deps a master would give a mail reporter: an HTTP
// client whose TLS trusts the test relays.
func (s *mailServers) deps() Deps {
	return Deps{
		HTTP:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Roots}}},
		Title: "Example CI",
	}
}

// mpAddress is an address as mailpit's API gives it.
type mpAddress struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

// mpMessage is a message as mailpit's API gives it, with its headers and
// text.
type mpMessage struct {
	ID        string      `json:"ID"`
	MessageID string      `json:"MessageID"`
	From      mpAddress   `json:"From"`
	To        []mpAddress `json:"To"`
	Cc        []mpAddress `json:"Cc"`
	Bcc       []mpAddress `json:"Bcc"`
	Subject   string      `json:"Subject"`
	Text      string      `json:"Text"`
	Headers   map[string][]string
}

func (m *mailpit) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(m.api + path)
	if err != nil {
		t.Fatalf("mailpit %s: GET %s: %v", m.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mailpit %s: GET %s: %s", m.name, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("mailpit %s: GET %s: %v", m.name, path, err)
	}
}

// messages returns the messages m holds whose Message-ID is id, oldest
// first, each read whole (headers and text).
func (m *mailpit) messages(t *testing.T, id string) []mpMessage {
	t.Helper()
	var list struct {
		Messages []mpMessage `json:"messages"`
	}
	m.get(t, "search?limit=1000&query="+url.QueryEscape("message-id:"+id), &list)
	var out []mpMessage
	for i := len(list.Messages) - 1; i >= 0; i-- { // the API lists the newest first
		s := list.Messages[i]
		if s.MessageID != id {
			continue
		}
		var full mpMessage
		m.get(t, "message/"+s.ID, &full)
		m.get(t, "message/"+s.ID+"/headers", &full.Headers)
		out = append(out, full)
	}
	return out
}

// waitMessages waits until m holds n messages with Message-ID id and
// returns them. SMTP servers store a message before they accept it, so
// this is a check, not a race.
func (m *mailpit) waitMessages(t *testing.T, id string, n int) []mpMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		got := m.messages(t, id)
		if len(got) >= n {
			if len(got) > n {
				t.Fatalf("mailpit %s: %d messages with Message-ID %s, want %d", m.name, len(got), id, n)
			}
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("mailpit %s: %d messages with Message-ID %s after 30s, want %d", m.name, len(got), id, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
