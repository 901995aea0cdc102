package config

import (
	"fmt"
	"os"
	"time"
)

// tlsWarnings warns about the TLS files of the worker port and the web:
// a private key that its group or others may read (as the worker's rc.d
// script warns about worker.toml), and a worker port certificate (of
// tls_cert_file) that expires within CertExpiryWarning, or has.
func (c *Config) tlsWarnings(now time.Time) []string {
	var ws []string
	g := c.Protocols.GRPC.TLS
	if g.Mode == TLSFiles {
		if w := readableKey(g.KeyFile); w != "" {
			ws = append(ws, c.at(0, "protocols.grpc.tls_key_file", w))
		}
		if cert, err := LoadKeyPair(g.CertFile, g.KeyFile); err == nil {
			if w := expiryWarning(g.CertFile, cert.Leaf.NotAfter, now, "workers refuse it"); w != "" {
				ws = append(ws, c.at(0, "protocols.grpc.tls_cert_file", w))
			}
		}
	}
	if c.WWW.TLS.Enabled() {
		if w := readableKey(c.WWW.TLS.KeyFile); w != "" {
			ws = append(ws, c.at(c.WWW.TLS.Line, "www.tls_key_file", w))
		}
	}
	return ws
}

// readableKey returns a warning when the private key file at path may be
// read by its group or others, or "".
func readableKey(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("the private key %s is readable by its group or others (mode %04o): chmod 600 it, owned by the master's user", path, fi.Mode().Perm())
}

// expiryWarning returns a warning about the certificate file whose leaf
// ends at notAfter when that is within CertExpiryWarning of now, or past;
// refused says who refuses an expired one.
func expiryWarning(file string, notAfter, now time.Time, refused string) string {
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		return fmt.Sprintf("the certificate %s expired on %s: %s; renew it and run `gbb-master reconfig`", file, notAfter.UTC().Format(time.RFC3339), refused)
	case left < CertExpiryWarning:
		return fmt.Sprintf("the certificate %s expires on %s (in %d days): renew it and run `gbb-master reconfig`", file, notAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))
	}
	return ""
}
