package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testx509"
)

// TestTLSWarnings: the worker port's tls_cert_file near or past its end is
// warned about, as the web's is; a private key of either port that its
// group or others may read is warned about, as the worker's rc.d script
// warns about worker.toml; a good set-up gets no warning.
func TestTLSWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testx509.NewCA(t, dir, "test")
	good := ca.Issue(t, dir, "good", testx509.Options{})
	soon := ca.Issue(t, dir, "soon", testx509.Options{NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	expired := ca.Issue(t, dir, "expired", testx509.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	open := ca.Issue(t, dir, "open", testx509.Options{})
	if err := os.Chmod(open.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	files := func(table string, l *testx509.Leaf) string {
		return "[" + table + "]\ntls_cert_file = \"" + l.CertFile + "\"\ntls_key_file = \"" + l.KeyFile + "\"\n"
	}
	for _, tt := range []struct {
		name, src string
		want      string // "" means no TLS warning
	}{
		{"grpc good", files("protocols.grpc", good), ""},
		{"grpc soon", files("protocols.grpc", soon), "protocols.grpc.tls_cert_file: the certificate " + soon.CertFile + " expires on"},
		{"grpc expired", files("protocols.grpc", expired), "protocols.grpc.tls_cert_file: the certificate " + expired.CertFile + " expired on"},
		{"grpc key readable", files("protocols.grpc", open), "protocols.grpc.tls_key_file: the private key " + open.KeyFile + " is readable by its group or others (mode 0644): chmod 600 it"},
		{"www good", files("www", good), ""},
		{"www key readable", files("www", open), "master.toml:2: www.tls_key_file: the private key " + open.KeyFile + " is readable by its group or others (mode 0644)"},
	} {
		c, err := Parse(filepath.Join(dir, "master.toml"), []byte(tt.src))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for _, w := range c.Warnings() {
			if strings.Contains(w, "certificate") || strings.Contains(w, "private key") {
				got = append(got, w)
			}
		}
		switch {
		case tt.want == "" && len(got) > 0:
			t.Errorf("%s: warnings %q, want none", tt.name, got)
		case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
			t.Errorf("%s: warnings %q, want one with %q", tt.name, got, tt.want)
		}
	}
}
