package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckconfigWarnings: rules that leave control actions unnamed, and
// users whose bcrypt costs differ, are warned about by checkconfig, which
// still passes the config.
func TestCheckconfigWarnings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mustRun(t, e.master, "create-master", e.masterDir)
	cfg := `
[www]
port = 8010
interface = "127.0.0.1"
[www.auth]
type = "users"
[[www.auth.users]]
username = "alice"
password_hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
[[www.auth.users]]
username = "root"
password_hash = "$2a$04$SJ.QNf9oi10S8IxJEZDfiOPt4CizuIxTqxP8rl6PcdskYgZmP/kfy"
[www.authz]
[[www.authz.rules]]
actions = ["stop", "rebuild", "cancel", "pause", "unpause", "kill"]
roles = ["admins"]
`
	if err := os.WriteFile(filepath.Join(e.masterDir, "master.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, e.master, "checkconfig", e.masterDir)
	for _, want := range []string{
		"warning: " + filepath.Join(e.masterDir, "master.toml") + ":14: www.authz.rules: the rules name some control actions but not force, graceful: every logged-in user may do force, graceful",
		"www.auth: the users' bcrypt hashes have different costs (cost 4: root; cost 10: alice)",
		"gbb-master hashpw",
		"Config file is good",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("checkconfig does not say %q:\n%s", want, out)
		}
	}
}
