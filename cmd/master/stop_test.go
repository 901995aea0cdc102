package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testsshd"
)

// TestStopWithHungSSHPoll runs the real master with a git poller of an
// ssh remote that accepts the connection and never sends its greeting (a
// frozen sshd), polled at launch: `gbb-master stop` returns within
// seconds, not after its minute of waiting, and master.log says
// "stopping", with the signal, before the master's last words.
func TestStopWithHungSSHPoll(t *testing.T) {
	t.Parallel()
	frozen := testsshd.StartFrozen(t)
	dir := t.TempDir()
	testsshd.ClientFiles(t, dir, frozen.Addr)
	conf := fmt.Sprintf(`buildbot_url = "http://127.0.0.1/"
[protocols.grpc]
port = 0
interface = "127.0.0.1"
[www]
port = 0
interface = "127.0.0.1"

[[change_source]]
type = "git_poller"
repourl = "ssh://git@%s/src.git"
ssh_private_key_file = "id_ed25519"
ssh_known_hosts_file = "known_hosts"
poll_at_launch = true
`, frozen.Addr)
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildMaster(t)
	runMaster(t, bin, "start", dir)
	select {
	case <-frozen.Accepted:
	case <-time.After(time.Minute):
		runMaster(t, bin, "stop", dir)
		t.Fatal("the poll at launch never connected")
	}
	start := time.Now()
	runMaster(t, bin, "stop", dir)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("stop took %s with a poll hung in the ssh greeting", took)
	}
	log, _ := os.ReadFile(filepath.Join(dir, logFile))
	i := strings.Index(string(log), `msg=stopping cause="terminated signal received"`)
	if i < 0 {
		t.Fatalf("master.log does not say it is stopping, with the signal:\n%s", log)
	}
	if strings.Contains(string(log[:i]), "change source stopped") {
		t.Errorf("master.log says stopping only after the pollers stopped:\n%s", log)
	}
}
