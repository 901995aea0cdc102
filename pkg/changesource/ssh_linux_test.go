//go:build linux

package changesource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/testsshd"
)

// TestPollSSH polls a repository through OpenSSH's sshd on loopback with
// ssh_private_key_file and ssh_known_hosts_file: sshd accepts that key,
// the poller checks the host's key against the file, and a host whose key
// the file does not list, or lists otherwise, is refused with an error
// that says so, before anything is stored or fetched.
func TestPollSSH(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "key dir's")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	good, goodPub, goodFP := testsshd.GenKey(t, keys, "good")
	wrong, _, _ := testsshd.GenKey(t, keys, "wrong")
	_, otherHostPub, _ := testsshd.GenKey(t, keys, "other_host")
	srv := testsshd.Start(t, goodPub)
	knownHosts := func(content string) string {
		path := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	known := knownHosts(srv.KnownHosts())
	_, port, _ := strings.Cut(srv.Addr, ":")

	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	repoURL := "ssh://root@" + srv.Addr + r.dir
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))

	for _, tc := range []struct {
		name string
		cfg  GitPollerConfig
		want string
	}{
		{"unknown host", GitPollerConfig{SSHKeyFile: good, SSHKnownHostsFile: knownHosts("[127.0.0.1]:1 " + srv.HostKey)},
			"ssh host key of 127.0.0.1:" + port + " (ssh-ed25519 SHA256:"},
		{"changed host key", GitPollerConfig{SSHKeyFile: good, SSHKnownHostsFile: knownHosts("[127.0.0.1]:" + port + " " + otherHostPub)},
			"does not match the one in "},
		{"key not authorized", GitPollerConfig{SSHKeyFile: wrong, SSHKnownHostsFile: known}, "unable to authenticate"},
		{"missing key file", GitPollerConfig{SSHKeyFile: good + ".missing", SSHKnownHostsFile: known}, "ssh key: stat "},
		{"missing known hosts", GitPollerConfig{SSHKeyFile: good, SSHKnownHostsFile: known + ".missing"}, "ssh known hosts: stat "},
		{"not a key", GitPollerConfig{SSHKeyFile: known, SSHKnownHostsFile: known}, "ssh key " + known},
	} {
		tc.cfg.RepoURL = repoURL
		p, _ := newTestPoller(t, tc.cfg, db)
		err := p.Poll(t.Context())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Poll: %v, want an error saying %q", tc.name, err, tc.want)
		}
		if tc.name == "unknown host" && err != nil && !strings.Contains(err.Error(), "is not in "+tc.cfg.SSHKnownHostsFile+": refusing to connect") {
			t.Errorf("%s: the error does not say where the key should be: %v", tc.name, err)
		}
		if _, err := os.Stat(p.cfg.Workdir); !os.IsNotExist(err) {
			t.Errorf("%s: the mirror was made: %v", tc.name, err)
		}
	}
	if v, found, _ := db.GetState("GitPoller:"+repoURL, "lastRev"); found {
		t.Fatalf("a refused poll stored state %s", v)
	}

	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: repoURL, SSHKeyFile: good, SSHKnownHostsFile: known}, db)
	poll(t, p)
	c1 := r.commit("one", "a", "1\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "one"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	if log := srv.Log(); !strings.Contains(log, "Accepted publickey for root from 127.0.0.1") || !strings.Contains(log, goodFP) {
		t.Errorf("sshd did not accept the key %s (%s):\n%s", good, goodFP, log)
	}

	// An scp-like URL (user@host:port:path, as go-git reads it), with the
	// known hosts of SSH_KNOWN_HOSTS.
	t.Setenv("SSH_KNOWN_HOSTS", known)
	scp := "root@127.0.0.1:" + port + ":" + r.dir
	p, rec = newTestPoller(t, GitPollerConfig{RepoURL: scp, SSHKeyFile: good}, db)
	poll(t, p)
	c2 := r.commit("two", "a", "2\n")
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c2, "two"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced over an scp-like URL (-want +got):\n%s", diff)
	}
}
