package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckconfigWarnings: rules that leave control actions unnamed, and
// users whose bcrypt costs differ, are warned about by checkconfig, which
// still passes the config, and in the log of a master that starts.
func TestCheckconfigWarnings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(loopback + `
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
`)
	out := mustRun(t, e.master, "checkconfig", e.masterDir)
	for _, want := range []string{
		"warning: " + filepath.Join(e.masterDir, "master.toml") + ":21: www.authz.rules: the rules name some control actions but not force, graceful, enable: every logged-in user may do force, graceful; no one may do enable (added in this version; name it in a rule to allow it)",
		"www.auth: the users' bcrypt hashes have different costs (cost 4: root; cost 10: alice)",
		"gbb-master hashpw",
		"Config file is good",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("checkconfig does not say %q:\n%s", want, out)
		}
	}
	// The master says the same in its log when it starts.
	e.startMaster()
	log, err := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"config warning: ", "every logged-in user may do force, graceful; no one may do enable (added in this version", "bcrypt hashes have different costs"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("master.log does not say %q:\n%s", want, log)
		}
	}
}
