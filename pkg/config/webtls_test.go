package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/internal/testx509"
)

// TestWebTLS: [www] tls_cert_file and tls_key_file are read relative to
// the config's directory, checked at load time (a key that is not the
// certificate's is an error naming the key), the key file is one of the
// master's own files, and a certificate near its end is warned about.
func TestWebTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testx509.NewCA(t, dir, "test")
	good := ca.Issue(t, dir, "web", testx509.Options{})
	other := ca.Issue(t, dir, "other", testx509.Options{})
	soon := ca.Issue(t, dir, "soon", testx509.Options{NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	load := func(src string) (*Config, error) {
		p := filepath.Join(dir, "master.toml")
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(p)
	}

	c, err := load("[www]\nport = 8443\ntls_cert_file = \"web.pem\"\ntls_key_file = \"web-key.pem\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.WWW.TLS.CertFile != good.CertFile || c.WWW.TLS.KeyFile != good.KeyFile || c.WWW.TLS.Line != 3 || !c.WWW.TLS.NotAfter.Equal(good.Cert.NotAfter) {
		t.Errorf("TLS = %+v, want the files of %s, line 3", c.WWW.TLS, dir)
	}
	if !slices.ContainsFunc(c.KeyFiles, func(f masterfiles.File) bool { return f.Path == good.KeyFile }) {
		t.Errorf("the key file is not one of the master's files: %v", c.KeyFiles)
	}
	for _, w := range c.Warnings() {
		if strings.Contains(w, "certificate") {
			t.Errorf("a warning about a certificate valid for a day: %s", w)
		}
	}

	c, err = load("[www]\ntls_cert_file = \"" + soon.CertFile + "\"\ntls_key_file = \"" + soon.KeyFile + "\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); !slices.ContainsFunc(ws, func(w string) bool {
		return strings.Contains(w, "master.toml:2: www.tls_cert_file: the certificate "+soon.CertFile+" expires on") && strings.Contains(w, "(in 4 days)")
	}) {
		t.Errorf("warnings %q: want one that the certificate expires in 4 days", ws)
	}
	if c, err := load(""); err != nil || c.WWW.TLS.Enabled() {
		t.Errorf("no TLS keys: %+v, %v; want plain HTTP", c.WWW.TLS, err)
	}

	for _, tt := range []struct{ src, want string }{
		{"[www]\ntls_cert_file = \"web.pem\"\n", "master.toml:2: www.tls_cert_file: needs tls_key_file too"},
		{"[www]\ntls_key_file = \"web-key.pem\"\n", "master.toml:2: www.tls_key_file: needs tls_cert_file too"},
		{"[www]\ntls_cert_file = \"web.pem\"\ntls_key_file = \"other-key.pem\"\n", "master.toml:2: www.tls_cert_file: certificate " + good.CertFile + " and key " + other.KeyFile + ": tls: private key does not match public key"},
		{"[www]\ntls_cert_file = \"nope.pem\"\ntls_key_file = \"web-key.pem\"\n", "no such file or directory"},
		{"[www]\ntls_cert_file = \"\"\ntls_key_file = \"web-key.pem\"\n", "master.toml:2: www.tls_cert_file: must not be empty"},
		{"[www]\ntls_cert_file = 3\ntls_key_file = \"web-key.pem\"\n", "master.toml:2: www.tls_cert_file: expected a string, got integer"},
	} {
		if _, err := load(tt.src); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.src, err, tt.want)
		}
	}
}
