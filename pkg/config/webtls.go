package config

import (
	"path/filepath"
	"time"
)

// WebTLS is tls_cert_file and tls_key_file of [www]: the web port serves
// HTTPS (and HTTP/2) with that certificate, for a master without nginx in
// front. Both empty (the default) means plain HTTP, as behind nginx, which
// terminates TLS (deploy/freebsd/nginx.conf).
type WebTLS struct {
	// CertFile is tls_cert_file: a PEM certificate chain, the server's
	// certificate first; KeyFile is tls_key_file: its PEM private key.
	// Both are absolute (a relative path in the file is taken from the
	// config file's directory), read at load time to check them, and read
	// again by the web server at start and at every reconfig, so that a
	// renewed certificate is picked up by `gbb-master reconfig` without
	// dropping a connection.
	CertFile, KeyFile string
	// NotAfter is when the certificate read at load time expires; zero
	// without TLS.
	NotAfter time.Time
	Line     int // line of tls_cert_file
}

// Enabled reports whether the web port serves HTTPS.
func (t WebTLS) Enabled() bool { return t.CertFile != "" }

// CertExpiryWarning is how close to its end a certificate is warned
// about (checkconfig, master.log at start and reconfig).
const CertExpiryWarning = 14 * 24 * time.Hour

// webTLS reads tls_cert_file and tls_key_file of the [www] table w.
func (d *decoder) webTLS(w *table, c *WWW) {
	cert, hasCert := w.str("tls_cert_file")
	key, hasKey := w.str("tls_key_file")
	switch {
	case !hasCert && !hasKey:
		return
	case hasCert && !hasKey:
		w.errorf("tls_cert_file", "needs tls_key_file too")
		return
	case hasKey && !hasCert:
		w.errorf("tls_key_file", "needs tls_cert_file too")
		return
	case cert == "":
		w.errorf("tls_cert_file", "must not be empty")
		return
	case key == "":
		w.errorf("tls_key_file", "must not be empty")
		return
	}
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(d.dir, p)
		}
		return p
	}
	cert, key = abs(cert), abs(key)
	d.keyFile(w, "tls_key_file", key)
	t := WebTLS{CertFile: cert, KeyFile: key, Line: w.d.line(w.path.key("tls_cert_file"))}
	leaf, err := LoadKeyPair(cert, key)
	if err != nil {
		w.errorf("tls_cert_file", "%v", err)
		return
	}
	t.NotAfter = leaf.Leaf.NotAfter
	c.TLS = t
}

// expiryWarning returns a warning about a certificate that expires
// within CertExpiryWarning of now, or has, or "".
func (t WebTLS) expiryWarning(now time.Time) string {
	if !t.Enabled() || t.NotAfter.IsZero() {
		return ""
	}
	return expiryWarning(t.CertFile, t.NotAfter, now, "browsers refuse it")
}
