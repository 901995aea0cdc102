package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReconfigRefusesReporterThatCannotRun: a reconfig whose mail
// template does not parse, or names a field no report has, is refused
// whole, like any config error; the config in force stays.
func TestReconfigRefusesReporterThatCannotRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.toml")
	write := func(subject string) {
		t.Helper()
		src := "title = \"T\"\n[protocols.grpc]\nport = 0\ninterface = \"127.0.0.1\"\n\n[[reporters]]\ntype = \"mail\"\nfrom_addr = \"ci@example.org\"\nsubject = \"" + subject + "\"\n"
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("{{.Builder}} ok")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	m := New(dir, cfg, nil)
	for _, bad := range []string{"{{.Builder}", "{{.NoSuchField}}"} {
		write(bad)
		err := m.Reconfig(path)
		if err == nil || !strings.Contains(err.Error(), "master.toml:6: reporters[0].subject: template:") {
			t.Errorf("Reconfig with subject %q = %v, want refused naming master.toml:6: reporters[0].subject", bad, err)
		}
		if got := m.cfg.Reporters[0].Subject; got != "{{.Builder}} ok" {
			t.Errorf("the config in force changed: subject %q", got)
		}
	}
}
