package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"github.com/gbb-ci/gbb/internal/masterfiles"
)

// The modes of [protocols.grpc] tls.
const (
	// TLSOff serves the worker port in plaintext: for loopback and jails on
	// a private interface (the seed's lo1). The login is a
	// challenge-response all the same; the stream is not encrypted.
	TLSOff = "off"
	// TLSAuto serves TLS with the master's own CA and server certificate,
	// kept in AutoTLSDir (made by create-master, or at start when missing).
	TLSAuto = "auto"
	// TLSFiles serves TLS with tls_cert_file and tls_key_file.
	TLSFiles = "files"
)

// AutoTLSDir is the directory, in the master's basedir, of tls = "auto"'s
// CA and server certificate (pkg/master's autotls.go makes them).
const AutoTLSDir = "worker-tls"

// maxPEMFile bounds a certificate, key or CA file.
const maxPEMFile = 1 << 20

// GRPCTLS is the TLS of [protocols.grpc].
type GRPCTLS struct {
	// Mode is tls: TLSOff, TLSAuto or TLSFiles. Default: TLSFiles when
	// tls_cert_file is set, else TLSOff.
	Mode string
	// CertFile and KeyFile are tls_cert_file and tls_key_file (PEM; the
	// certificate file may hold the chain after the leaf): absolute paths
	// (relative ones are to the config's directory). Both or neither; only
	// with TLSFiles. A reconfig reads them again: new files apply to new
	// connections, and the connected workers stay.
	CertFile, KeyFile string
	// ClientCAFile is client_ca_file: the CAs (PEM) whose client
	// certificates log workers in without a password, the certificate's CN
	// being the worker's name. Empty: password only.
	ClientCAFile string
	// Names is tls_names: the DNS names and IP addresses, besides the
	// master's hostname, "localhost", 127.0.0.1, ::1 and interface, that
	// TLSAuto's server certificate holds: the addresses workers dial.
	Names []string
}

// Enabled reports whether the worker port speaks TLS.
func (t GRPCTLS) Enabled() bool { return t.Mode == TLSAuto || t.Mode == TLSFiles }

// Equal reports whether t and o are the same settings.
func (t GRPCTLS) Equal(o GRPCTLS) bool {
	return t.Mode == o.Mode && t.CertFile == o.CertFile && t.KeyFile == o.KeyFile &&
		t.ClientCAFile == o.ClientCAFile && slices.Equal(t.Names, o.Names)
}

// grpcTLS reads tls, tls_cert_file, tls_key_file, client_ca_file and
// tls_names of [protocols.grpc] into g, and checks that the files load.
func (d *decoder) grpcTLS(t *table, g *GRPC) {
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			p = filepath.Join(d.dir, p)
		}
		return p
	}
	c := &g.TLS
	// tls_names is read whatever else is wrong, so that it gets one
	// message, not "unknown key" after another key's error.
	defer d.grpcTLSNames(t, c)
	mode, hasMode := t.str("tls")
	cert, hasCert := t.str("tls_cert_file")
	key, hasKey := t.str("tls_key_file")
	c.CertFile, c.KeyFile = abs(cert), abs(key)
	switch {
	case hasMode && mode != TLSOff && mode != TLSAuto:
		t.errorf("tls", `%q: want "auto" or "off" (or leave it out and give tls_cert_file and tls_key_file)`, mode)
		return
	case hasMode && (hasCert || hasKey):
		t.errorf("tls", `%q: not with tls_cert_file and tls_key_file (they imply TLS); leave tls out`, mode)
		return
	case hasCert != hasKey:
		if hasCert {
			t.errorf("tls_cert_file", "needs tls_key_file too")
		} else {
			t.errorf("tls_key_file", "needs tls_cert_file too")
		}
		return
	case hasCert:
		c.Mode = TLSFiles
	case hasMode:
		c.Mode = mode
	default:
		c.Mode = TLSOff
	}
	if ca, ok := t.str("client_ca_file"); ok {
		c.ClientCAFile = abs(ca)
		switch {
		case !c.Enabled():
			t.errorf("client_ca_file", `client certificates need TLS: set tls = "auto" or tls_cert_file and tls_key_file`)
		default:
			if _, err := LoadCAFile(c.ClientCAFile); err != nil {
				t.errorf("client_ca_file", "%v", err)
			}
		}
	}
	switch c.Mode {
	case TLSFiles:
		d.keyFile(t, "tls_key_file", c.KeyFile)
		if _, err := LoadKeyPair(c.CertFile, c.KeyFile); err != nil {
			t.errorf("tls_cert_file", "%v", err)
		}
	case TLSAuto:
		d.keyFiles = append(d.keyFiles, masterfiles.File{Path: filepath.Join(d.dir, AutoTLSDir), Dir: true,
			What: `the directory of tls = "auto"'s CA and keys`})
	}
}

// grpcTLSNames reads tls_names of [protocols.grpc] into c, once c.Mode is
// known (empty when tls itself was refused).
func (d *decoder) grpcTLSNames(t *table, c *GRPCTLS) {
	names, ok := t.strings("tls_names")
	if !ok {
		return
	}
	if c.Mode != TLSAuto {
		t.errorf("tls_names", `only with tls = "auto" (the names of the certificate the master makes; a certificate of your own, tls_cert_file, holds its own names)`)
		return
	}
	for _, n := range names {
		if n == "" || (net.ParseIP(n) == nil && !validDNSName(n)) {
			t.errorf("tls_names", "%q is neither an IP address nor a DNS name", n)
		}
	}
	c.Names = names
}

// validDNSName reports whether s looks like a DNS name (letters, digits,
// hyphens and dots; a leading "*." for a wildcard).
func validDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		case r == '*' && i == 0 && len(s) > 2 && s[1] == '.':
		default:
			return false
		}
	}
	return true
}

// LoadKeyPair loads a PEM certificate (its chain after it) and its key,
// each a regular file of at most 1 MiB, with errors that name the file;
// the certificate's Leaf is parsed.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readSmallFile(certFile, maxPEMFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read %s: %w", certFile, err)
	}
	keyPEM, err := readSmallFile(keyFile, maxPEMFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read %s: %w", keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s and key %s: %v", certFile, keyFile, err)
	}
	return cert, nil
}

// LoadCAFile loads the PEM certificates of a CA file (at most 1 MiB).
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := readSmallFile(path, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}
