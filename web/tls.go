package web

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gbb-ci/gbb/internal/logsample"
	"github.com/gbb-ci/gbb/pkg/config"
)

// HTTPS on the web port, for a master without a proxy in front ([www]
// tls_cert_file and tls_key_file): TLS 1.2 with forward-secret AEAD
// suites only, or TLS 1.3, and HTTP/2, which net/http negotiates (ALPN
// "h2") on a TLS listener. The certificate is read at Serve and again at
// every SetTLS (a reconfig), and handed to each new handshake by
// GetCertificate, so a renewed certificate is used from the next
// connection on and no open connection is dropped.

// modernSuites are the TLS 1.2 cipher suites the web port accepts:
// ECDHE key exchange and an AEAD cipher, as Mozilla's "intermediate"
// profile. HTTP/2 requires TLS_ECDHE_*_WITH_AES_128_GCM_SHA256, which is
// here. TLS 1.3's suites are not configurable and all modern.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// certs is the web port's certificate, replaced whole by a reload.
type certs struct {
	cur atomic.Pointer[tls.Certificate]
}

// load reads the files of t and makes them the certificate of new
// handshakes; on an error the certificate in force stays.
func (c *certs) load(t config.WebTLS) error {
	cert, err := config.LoadKeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return err
	}
	c.cur.Store(&cert)
	return nil
}

func (c *certs) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := c.cur.Load()
	if cert == nil {
		return nil, errors.New("no certificate loaded")
	}
	return cert, nil
}

// tlsConfig is the TLS configuration of the web port.
func (c *certs) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   modernSuites,
		GetCertificate: c.get,
	}
}

// SetTLS applies a reconfig's [www] tls_cert_file and tls_key_file: it
// reads the files again and serves their certificate from the next
// handshake on; connections open keep theirs. On an error (the files
// changed since the config was checked) the certificate in force stays,
// and the error says why. Turning TLS on or off needs a restart; SetTLS
// on a server serving plain HTTP does nothing.
func (s *Server) SetTLS(t config.WebTLS) error {
	if !s.cfg.TLS.Enabled() || !t.Enabled() {
		return nil
	}
	if err := s.certs.load(t); err != nil {
		return err
	}
	s.log.Info("web certificate loaded", "cert", t.CertFile, "not_after", s.certs.cur.Load().Leaf.NotAfter)
	return nil
}

// httpErrorLog is the http.Server's ErrorLog: its lines go to the log at
// Warn, but for the failed TLS handshakes, which any port scanner or
// plain-HTTP client causes, one each: those are sampled (handshakes), so
// that nobody can flood master.log.
type httpErrorLog struct {
	log        *slog.Logger
	handshakes *logsample.Sampler
}

func (h httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		h.handshakes.Log(h.log, slog.LevelWarn, msg)
		return len(p), nil
	}
	h.log.Warn(msg)
	return len(p), nil
}

// secure reports whether the browser reached the site over HTTPS, so
// that cookies set in answer to r must be Secure: the request came over
// TLS, or buildbot_url is https, or a trusted proxy (trusted_proxies)
// says with X-Forwarded-Proto that its client used https. (A header from
// anyone else is not believed.)
func (s *Server) secure(r *http.Request) bool {
	if r.TLS != nil || s.site().secure {
		return true
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if !strings.EqualFold(strings.TrimSpace(proto), "https") {
		return false
	}
	peer := r.RemoteAddr
	if h, _, err := net.SplitHostPort(peer); err == nil {
		peer = h
	}
	return s.trustedProxy(peer)
}
