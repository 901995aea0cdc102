package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeTestPair writes a self-signed certificate and its key to dir.
func writeTestPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "m"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestGRPCTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeTestPair(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, src string
		want      GRPCTLS
		err       string
	}{
		{name: "default", src: ``, want: GRPCTLS{Mode: TLSOff}},
		{name: "off", src: `tls = "off"`, want: GRPCTLS{Mode: TLSOff}},
		{name: "auto", src: `tls = "auto"` + "\ntls_names = [\"ci.example.org\", \"192.0.2.1\"]",
			want: GRPCTLS{Mode: TLSAuto, Names: []string{"ci.example.org", "192.0.2.1"}}},
		{name: "files", src: `tls_cert_file = "` + cert + `"` + "\n" + `tls_key_file = "` + key + `"` + "\n" + `client_ca_file = "` + cert + `"`,
			want: GRPCTLS{Mode: TLSFiles, CertFile: cert, KeyFile: key, ClientCAFile: cert}},
		{name: "bad mode", src: `tls = "on"`, err: `master.toml:3: protocols.grpc.tls: "on": want "auto" or "off"`},
		{name: "mode and files", src: `tls = "auto"` + "\n" + `tls_cert_file = "` + cert + `"` + "\n" + `tls_key_file = "` + key + `"`,
			err: `protocols.grpc.tls: "auto": not with tls_cert_file and tls_key_file`},
		{name: "cert without key", src: `tls_cert_file = "` + cert + `"`, err: "protocols.grpc.tls_cert_file: needs tls_key_file too"},
		{name: "unreadable", src: `tls_cert_file = "` + garbage + `"` + "\n" + `tls_key_file = "` + key + `"`,
			err: "protocols.grpc.tls_cert_file: certificate " + garbage + " and key " + key + ": tls: failed to find any PEM data in certificate input"},
		{name: "missing", src: `tls_cert_file = "nope.pem"` + "\n" + `tls_key_file = "` + key + `"`,
			err: "protocols.grpc.tls_cert_file: read " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{name: "client CA without TLS", src: `client_ca_file = "` + cert + `"`, err: "protocols.grpc.client_ca_file: client certificates need TLS"},
		{name: "client CA not PEM", src: `tls = "auto"` + "\n" + `client_ca_file = "` + garbage + `"`, err: "protocols.grpc.client_ca_file: " + garbage + ": no PEM certificate in it"},
		{name: "names without auto", src: `tls_names = ["x"]`, err: `protocols.grpc.tls_names: only with tls = "auto"`},
		{name: "bad name", src: `tls = "auto"` + "\n" + `tls_names = ["bad name"]`, err: `protocols.grpc.tls_names: "bad name" is neither an IP address nor a DNS name`},
		// Whatever else is wrong, tls_names gets the one message, never
		// "unknown key".
		{name: "names with off", src: `tls = "off"` + "\n" + `tls_names = ["x"]`, err: `protocols.grpc.tls_names: only with tls = "auto"`},
		{name: "names with a bad mode", src: `tls = "files"` + "\n" + `tls_names = ["x"]`, err: `protocols.grpc.tls_names: only with tls = "auto"`},
		{name: "names with a cert without key", src: `tls_cert_file = "` + cert + `"` + "\n" + `tls_names = ["x"]`, err: `protocols.grpc.tls_names: only with tls = "auto"`},
		{name: "names with files", src: `tls_cert_file = "` + cert + `"` + "\n" + `tls_key_file = "` + key + `"` + "\n" + `tls_names = ["x"]`, err: `protocols.grpc.tls_names: only with tls = "auto"`},
		{name: "names with off and files", src: `tls = "off"` + "\n" + `tls_cert_file = "` + cert + `"` + "\n" + `tls_key_file = "` + key + `"` + "\n" + `tls_names = ["x"]`, err: `protocols.grpc.tls_names: only with tls = "auto"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := "[protocols.grpc]\nport = 9989\n" + tc.src + "\n"
			c, err := Parse(filepath.Join(dir, "master.toml"), []byte(src))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, c.Protocols.GRPC.TLS); diff != "" {
				t.Errorf("TLS (-want +got):\n%s", diff)
			}
		})
	}
}
