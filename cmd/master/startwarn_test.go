package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testx509"
)

// TestStartPrintsWarnings: start prints the config's warnings, as
// checkconfig does, so that a master does not start quietly with an
// expired worker port certificate.
func TestStartPrintsWarnings(t *testing.T) {
	t.Parallel()
	bin := buildMaster(t)
	dir := t.TempDir()
	ca := testx509.NewCA(t, dir, "test")
	old := ca.Issue(t, dir, "port", testx509.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	conf := `buildbot_url = "http://127.0.0.1/"
[protocols.grpc]
port = 0
interface = "127.0.0.1"
tls_cert_file = "` + old.CertFile + `"
tls_key_file = "` + old.KeyFile + `"
[www]
port = 0
interface = "127.0.0.1"
`
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runMaster(t, bin, "start", dir)
	t.Cleanup(func() { runMaster(t, bin, "stop", dir) })
	if !strings.Contains(out, "warning: ") || !strings.Contains(out, "protocols.grpc.tls_cert_file: the certificate "+old.CertFile+" expired on") {
		t.Errorf("start said:\n%s\nwant the warning that the worker port's certificate expired", out)
	}
}
