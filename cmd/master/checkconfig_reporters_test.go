package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckconfigReporters: checkconfig makes every reporter as the master
// would: a mail template that does not parse, or names a field no report
// has, fails it (exit 1) with file, line and key; smtp_user without TLS to
// another host is warned about.
func TestCheckconfigReporters(t *testing.T) {
	t.Parallel()
	bin := buildMaster(t)
	dir := t.TempDir()
	const head = "buildbot_url = \"http://127.0.0.1/\"\n\n"
	for _, c := range []struct {
		name, reporter string
		fails          bool
		want           string
	}{
		{"subject does not parse", "subject = \"{{.Builder}\"\n", true, "master.toml:3: reporters[0].subject: template:"},
		{"body names no field", "body = \"{{.NoSuchField}}\"\n", true, "master.toml:3: reporters[0].body: template:"},
		{"auth without tls", "relay_host = \"smtp.example.org\"\nsmtp_user = \"ci\"\nsmtp_password = \"%(secret:smtp)s\"\n", false,
			"warning: " + filepath.Join(dir, configFile) + ":3: reporters[0].smtp_user: set without use_tls or use_smtps"},
	} {
		src := head + "[[reporters]]\ntype = \"mail\"\nfrom_addr = \"ci@example.org\"\n" + c.reporter
		if err := os.WriteFile(filepath.Join(dir, configFile), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "checkconfig", dir).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); c.fails != (ok && ee.ExitCode() == 1) || !c.fails && err != nil {
			t.Errorf("%s: checkconfig: %v, want failing %v\n%s", c.name, err, c.fails, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s: checkconfig says\n%s\nwant %q", c.name, out, c.want)
		}
	}
}
