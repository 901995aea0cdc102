package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/config"
)

// TestReconfigKeepalive: the worker port's keepalive is read at start; a
// reconfig that changes it is refused and says a restart is needed.
func TestReconfigKeepalive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.toml")
	write := func(interval string) {
		t.Helper()
		src := "[protocols.grpc]\nport = 0\ninterface = \"127.0.0.1\"\nkeepalive_interval = \"" + interval + "\"\n"
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("5s")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m := New(dir, cfg, nil)
	write("5s")
	if err := m.Reconfig(path); err != nil {
		t.Errorf("Reconfig with the same keepalive: %v", err)
	}
	write("2s")
	err = m.Reconfig(path)
	if err == nil || !strings.Contains(err.Error(), "protocols.grpc") || !strings.Contains(err.Error(), "needs a restart") {
		t.Errorf("Reconfig with another keepalive_interval = %v, want: changing [protocols.grpc] needs a restart", err)
	}
}
