package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/internal/testx509"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/web/auth"
)

// tlsAuth is a [www.auth] with the user root (password pw-root).
func tlsAuth(t *testing.T) config.Auth {
	t.Helper()
	h := must(bcrypt.GenerateFromPassword([]byte("pw-root"), bcrypt.MinCost))(t)
	return config.Auth{Type: "users", SessionTimeout: config.DefaultSessionTimeout,
		Users: []config.User{{Username: "root", PasswordHash: string(h), Groups: []string{"admins"}}}}
}

// serve runs s.Serve on a loopback port until the test ends, and returns
// the port's address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	lis := must(net.Listen("tcp", "127.0.0.1:0"))(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { err = s.Serve(ctx, lis) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// loginCookie logs in as root with the login form through c and returns
// the session cookie it sets, hdr being extra header pairs.
func loginCookie(t *testing.T, c *http.Client, base string, hdr ...string) *http.Cookie {
	t.Helper()
	form := url.Values{"username": {"root"}, "password": {"pw-root"}, auth.CSRFField: {testFormToken}}.Encode()
	req := must(http.NewRequest("POST", base+"/login", strings.NewReader(form)))(t)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(anonCookie[0], anonCookie[1])
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp := must(c.Do(req))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", resp.Status)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == auth.SessionCookie {
			return ck
		}
	}
	t.Fatalf("login: no session cookie in %v", resp.Header)
	return nil
}

// TestServeHTTPS: with [www] tls_cert_file and tls_key_file the web port
// serves HTTPS with HTTP/2, TLS 1.2 or later with modern suites only,
// sets HSTS and Secure cookies, answers a plain HTTP request with an
// error, and a SetTLS (a reconfig) serves a renewed certificate to new
// connections while an open one goes on.
func TestServeHTTPS(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	dir := t.TempDir()
	ca := testx509.NewCA(t, dir, "web-test")
	first := ca.Issue(t, dir, "web", testx509.Options{})
	tlsCfg := config.WebTLS{CertFile: first.CertFile, KeyFile: first.KeyFile}
	s := New(Config{Store: f.db, MasterID: f.master.ID, MasterName: "master-1", Auth: tlsAuth(t), TLS: tlsCfg, Events: events.New(events.Config{})})
	addr := serve(t, s)
	base := "https://" + addr

	client := func() (*http.Client, *http.Transport) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, CheckRedirect: noRedirect.CheckRedirect}, tr
	}
	c1, _ := client()
	resp := must(c1.Get(base + "/api/v2/builders"))(t)
	body := must(io.ReadAll(resp.Body))(t)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "runtests") {
		t.Fatalf("GET /api/v2/builders over TLS: %s %s", resp.Status, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
		t.Errorf("TLS state %+v: want TLS 1.2+ with the configured certificate", resp.TLS)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != hsts {
		t.Errorf("Strict-Transport-Security = %q, want %q", got, hsts)
	}

	// The live streams work over TLS: /sse/ over HTTP/2, /ws over an
	// HTTP/1.1 upgrade (a WebSocket client asks for no h2; the server
	// offers no extended CONNECT).
	ctx, cancel := context.WithCancel(context.Background())
	req := must(http.NewRequestWithContext(ctx, "GET", base+"/sse/listen/builds", nil))(t)
	resp = must(c1.Do(req))(t)
	line := must(bufio.NewReader(resp.Body).ReadString('\n'))(t)
	cancel()
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || !strings.HasPrefix(line, "retry:") && !strings.HasPrefix(line, "event:") {
		t.Errorf("/sse/ over TLS: %s %s %q, first line %q", resp.Proto, resp.Status, resp.Header.Get("Content-Type"), line)
	}
	wsDialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
	ws, wsResp, err := wsDialer.Dial("wss://"+addr+"/ws", nil)
	if err != nil {
		t.Errorf("/ws over TLS: %v (%v)", err, wsResp)
	} else {
		ws.Close()
	}

	// Old protocols and suites without forward secrecy or AEAD are refused.
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.1":      {RootCAs: ca.Pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10},
		"CBC suite":    {RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		"RSA kex only": {RootCAs: ca.Pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			t.Errorf("%s: handshake succeeded with %x", name, conn.ConnectionState().CipherSuite)
			conn.Close()
		}
	}

	// A plain HTTP client gets an error, not a page.
	resp = must(http.Get("http://" + addr + "/"))(t)
	body = must(io.ReadAll(resp.Body))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("plain HTTP to the TLS port: %s %s", resp.Status, body)
	}

	// Cookies set over TLS are Secure, HttpOnly and SameSite=Lax.
	if ck := loginCookie(t, c1, base); !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("session cookie over TLS: %+v, want Secure, HttpOnly, SameSite=Lax", ck)
	}
	resp = must(c1.Get(base + "/builders"))(t)
	resp.Body.Close()
	if cks := resp.Cookies(); len(cks) != 1 || cks[0].Name != auth.AnonCSRFCookie || !cks[0].Secure || !cks[0].HttpOnly {
		t.Errorf("CSRF cookie over TLS: %v, want one Secure and HttpOnly", cks)
	}

	// A renewed certificate: new connections get it, the open one goes on.
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	get := func(c *http.Client) *http.Response {
		req := must(http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/api/v2/workers", nil))(t)
		resp := must(c.Do(req))(t)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	second := ca.Issue(t, dir, "web", testx509.Options{}) // the same files
	if err := s.SetTLS(tlsCfg); err != nil {
		t.Fatal(err)
	}
	if resp := get(c1); resp.StatusCode != 200 || !reused || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
		t.Errorf("after SetTLS, the open connection: %s, reused %v: want it kept, with the first certificate", resp.Status, reused)
	}
	c2, _ := client()
	if resp := get(c2); resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("after SetTLS, a new connection got serial %v, want the renewed %v", resp.TLS.PeerCertificates[0].SerialNumber, second.Cert.SerialNumber)
	}
	// Files that do not go together leave the certificate in force.
	other := ca.Issue(t, dir, "other", testx509.Options{})
	if err := s.SetTLS(config.WebTLS{CertFile: second.CertFile, KeyFile: other.KeyFile}); err == nil {
		t.Error("SetTLS took a key that is not the certificate's")
	}
	c3, _ := client()
	if resp := get(c3); resp.TLS.PeerCertificates[0].SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("a failed SetTLS changed the certificate")
	}
	// The name is checked as a browser does.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "ci.example.org"})
	if err == nil {
		conn.Close()
		t.Error("a certificate for 127.0.0.1 and localhost was taken for ci.example.org")
	} else if !strings.Contains(err.Error(), "certificate is valid for") {
		t.Errorf("wrong name: %v, want a verification error", err)
	}
}

// TestSecureCookies: the session cookie is Secure when the browser
// reached the site over https: buildbot_url is https, or a trusted proxy
// says so with X-Forwarded-Proto; anyone else's X-Forwarded-Proto is not
// believed. It is HttpOnly and SameSite=Lax always.
func TestSecureCookies(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tt := range []struct {
		name        string
		buildbotURL string
		proxies     []netip.Prefix
		hdr         []string
		secure      bool
	}{
		{"plain", "http://ci.example.org/", nil, nil, false},
		{"https buildbot_url", "https://ci.example.org/", nil, nil, true},
		{"trusted proxy says https", "http://ci.example.org/", loopback, []string{"X-Forwarded-Proto", "https"}, true},
		{"trusted proxy says http", "http://ci.example.org/", loopback, []string{"X-Forwarded-Proto", "http"}, false},
		{"untrusted X-Forwarded-Proto", "http://ci.example.org/", nil, []string{"X-Forwarded-Proto", "https"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(Config{Store: f.db, MasterID: f.master.ID, Auth: tlsAuth(t), BuildbotURL: tt.buildbotURL, TrustedProxies: tt.proxies})
			base := "http://" + serve(t, s)
			ck := loginCookie(t, noRedirect, base, tt.hdr...)
			if ck.Secure != tt.secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
				t.Errorf("session cookie %+v: want Secure %v, HttpOnly, SameSite=Lax", ck, tt.secure)
			}
			req := must(http.NewRequest("GET", base+"/builders", nil))(t)
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				req.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			resp := must(noRedirect.Do(req))(t)
			resp.Body.Close()
			if cks := resp.Cookies(); len(cks) != 1 || cks[0].Secure != tt.secure || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteLaxMode {
				t.Errorf("CSRF cookie %v: want Secure %v, HttpOnly, SameSite=Lax", cks, tt.secure)
			}
		})
	}
}

// TestHandshakeErrorsSampled: every client that fails the TLS handshake
// (a scanner, a plain-HTTP client) makes net/http log a line; those are
// sampled, so that a flood of them cannot fill master.log.
func TestHandshakeErrorsSampled(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	dir := t.TempDir()
	leaf := testx509.NewCA(t, dir, "web-test").Issue(t, dir, "web", testx509.Options{})
	var logs syncBuffer
	s := New(Config{Store: f.db, MasterID: f.master.ID, TLS: config.WebTLS{CertFile: leaf.CertFile, KeyFile: leaf.KeyFile},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	addr := serve(t, s)
	const clients = 40
	for range clients {
		conn := must(net.Dial("tcp", addr))(t)
		io.WriteString(conn, "GARBAGE / HTTP/1.0\r\n\r\n")
		// The server logs the failure, then closes the connection.
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	n := strings.Count(logs.String(), "TLS handshake error")
	if n == 0 || n > 11 {
		t.Errorf("%d failed handshakes logged %d lines, want 1 to 11:\n%s", clients, n, logs.String())
	}
}
