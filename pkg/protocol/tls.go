package protocol

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// TLS on the worker link: TLS 1.3, or TLS 1.2 with ECDHE key exchange and
// AEAD ciphers only (suites12); nothing older.
var suites12 = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLSState is what the master's worker port serves: its certificate
// (with the chain it sends, the CA included when it has one, so that a
// worker can pin the CA) and, for client certificates, the CAs it trusts
// (nil: workers log in by password only).
type ServerTLSState struct {
	Cert      *tls.Certificate
	ClientCAs *x509.CertPool
}

// NewServerTLS returns the worker port's TLS config for ServerConfig.TLS;
// current is called for each new connection, so a reconfig that swaps the
// files applies to the next connection and leaves the connected workers
// be.
func NewServerTLS(current func() ServerTLSState) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: suites12, NextProtos: []string{"h2"}}
	c := base.Clone()
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		st := current()
		if st.Cert == nil {
			return nil, errors.New("no certificate loaded for the worker port")
		}
		cc := base.Clone()
		cc.Certificates = []tls.Certificate{*st.Cert}
		if st.ClientCAs != nil {
			cc.ClientCAs = st.ClientCAs
			cc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return cc, nil
	}
	return c
}

// certNames reports whether state holds a client certificate verified
// against the master's client CAs, whose CN is name.
func certNames(state *tls.ConnectionState, name string) bool {
	return state != nil && len(state.VerifiedChains) > 0 && len(state.PeerCertificates) > 0 &&
		state.PeerCertificates[0].Subject.CommonName == name
}

// certCN returns the CN of the verified client certificate of state, if
// any.
func certCN(state *tls.ConnectionState) (string, bool) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return "", false
	}
	return state.PeerCertificates[0].Subject.CommonName, true
}

// loopback reports whether remote (host:port) is a loopback address.
func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guardedTLS is the worker port's TLS credentials: a handshake that fails
// is told to the guard, which logs it with the connection's address.
type guardedTLS struct {
	credentials.TransportCredentials
}

func (g guardedTLS) ServerHandshake(raw net.Conn) (c net.Conn, ai credentials.AuthInfo, err error) {
	gc, ok := raw.(*guardConn)
	if !ok {
		return g.TransportCredentials.ServerHandshake(raw)
	}
	err = gc.tlsHandshake(func() error {
		c, ai, err = g.TransportCredentials.ServerHandshake(raw)
		return err
	})
	return c, ai, err
}

func (g guardedTLS) Clone() credentials.TransportCredentials {
	return guardedTLS{g.TransportCredentials.Clone()}
}

// ClientTLS says how a worker checks its master's certificate; the zero
// value means a plaintext link.
type ClientTLS struct {
	// Fingerprint pins the master's CA (or its leaf certificate):
	// "sha256:" and the SHA-256 of the certificate's DER, in hex (colons
	// allowed), as create-master prints it. With a pinned CA, the leaf must
	// chain to it, be valid now, and name ServerName; with a pinned leaf,
	// the leaf must be valid now.
	Fingerprint string
	// CA is a PEM file of the CAs to trust instead of the system's.
	CAFile string
	// System, with neither Fingerprint nor CAFile, trusts the system's
	// roots (a public certificate).
	System bool
	// ServerName is the name the master's certificate must hold; empty
	// means the host of the master's address.
	ServerName string
	// CertFile and KeyFile, both or neither, are the worker's client
	// certificate (its CN the worker's name) for a master with
	// client_ca_file; with one, the password may be empty.
	CertFile, KeyFile string
}

// Enabled reports whether t asks for TLS.
func (t ClientTLS) Enabled() bool {
	return t.Fingerprint != "" || t.CAFile != "" || t.System
}

// ParseFingerprint reads "sha256:HEX" (colons allowed between bytes).
func ParseFingerprint(s string) ([]byte, error) {
	hexs, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if !ok {
		return nil, fmt.Errorf("fingerprint %q: must start with sha256:", s)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(hexs, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want sha256: and 64 hex digits", s)
	}
	return b, nil
}

// Fingerprint returns "sha256:" and the hex SHA-256 of a certificate's DER.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Config returns the worker's TLS config for dialing master (host:port),
// nil when t asks for no TLS.
func (t ClientTLS) Config(master string, readFile func(string) ([]byte, error)) (*tls.Config, error) {
	if !t.Enabled() {
		if t.CertFile != "" {
			return nil, errors.New("a client certificate needs TLS: give a fingerprint, a CA file or the system roots too")
		}
		return nil, nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("give both the client certificate and its key, or neither")
	}
	if t.Fingerprint != "" && t.CAFile != "" {
		// A pin is the only trust anchor: a CA file beside it would be
		// ignored, which its author did not mean either way.
		return nil, errors.New("give a fingerprint to pin (-tls-fingerprint, tls_fingerprint) or a CA file to trust (-tls-ca, tls_ca_file), not both")
	}
	name := t.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(master)
		if err != nil {
			return nil, fmt.Errorf("master address %q: %w", master, err)
		}
		name = host
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: suites12, ServerName: name, NextProtos: []string{"h2"}}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	switch {
	case t.Fingerprint != "":
		pin, err := ParseFingerprint(t.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pinned certificate is the trust anchor, not the system's
		// roots: Go's own verification is replaced by verifyPinned.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPinned(pin, name, cs.PeerCertificates, time.Now()) }
	case t.CAFile != "":
		pem, err := readFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// verifyPinned checks the master's chain against a pinned fingerprint:
// the pinned certificate must be in the chain; a pinned leaf must be valid
// at now; with a pinned CA, the leaf must chain to it (each certificate
// valid at now) and hold name.
func verifyPinned(pin []byte, name string, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("the master sent no certificate")
	}
	leaf := chain[0]
	var got []string
	for i, c := range chain {
		sum := sha256.Sum256(c.Raw)
		if string(sum[:]) != string(pin) {
			got = append(got, Fingerprint(c.Raw))
			continue
		}
		if i == 0 {
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return fmt.Errorf("the master's pinned certificate is not valid now: valid from %s to %s", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			return nil
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		inter := x509.NewCertPool()
		for _, m := range chain[1:i] {
			inter.AddCert(m)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: now}); err != nil {
			return fmt.Errorf("the master's certificate does not verify against the pinned CA: %w", err)
		}
		return nil
	}
	return fmt.Errorf("the master's certificate chain does not hold the pinned fingerprint sha256:%x (it holds %s): a different master, or a new CA; compare with what gbb-master create-master printed", pin, strings.Join(got, ", "))
}

// handshakeErrs remembers the last TLS handshake error of a worker's
// dialing, so that its session can say why it could not connect (gRPC
// hands it on only as text).
type handshakeErrs struct {
	credentials.TransportCredentials
	mu   *sync.Mutex
	last *error // guarded by mu
}

func newHandshakeErrs(c *tls.Config) handshakeErrs {
	var err error
	return handshakeErrs{TransportCredentials: credentials.NewTLS(c), mu: &sync.Mutex{}, last: &err}
}

func (h handshakeErrs) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := h.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		h.mu.Lock()
		*h.last = err
		h.mu.Unlock()
	}
	return c, ai, err
}

func (h handshakeErrs) Clone() credentials.TransportCredentials {
	return handshakeErrs{TransportCredentials: h.TransportCredentials.Clone(), mu: h.mu, last: h.last}
}

// err returns the last handshake error, if any.
func (h handshakeErrs) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return *h.last
}
