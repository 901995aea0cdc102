package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
)

// TestCreateMasterTLSNames: create-master -tls-names puts the names in the
// worker port's certificate, beside the loopback ones, and its CA key is
// 0600; run again, it keeps the CA.
func TestCreateMasterTLSNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	var out strings.Builder
	if err := createMasterTo(&out, []string{"-tls-names", "ci.example.org, 192.0.2.5", dir}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "made the master's CA") {
		t.Errorf("create-master said:\n%s\nwant made the master's CA", out.String())
	}
	tdir := filepath.Join(dir, config.AutoTLSDir)
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(tdir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	block, _ := pem.Decode(read("server.pem"))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ci.example.org", "192.0.2.5", "localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("the worker port's certificate: %v", err)
		}
	}
	if fi, err := os.Stat(filepath.Join(tdir, "ca.key")); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key has mode %v, want 0600", fi.Mode().Perm())
	}
	ca := read("ca.pem")
	out.Reset()
	if err := createMasterTo(&out, []string{dir}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kept the master's CA") {
		t.Errorf("the second create-master said:\n%s\nwant kept the master's CA", out.String())
	}
	if string(read("ca.pem")) != string(ca) {
		t.Error("a second create-master made another CA: its workers' pins would break")
	}
}
