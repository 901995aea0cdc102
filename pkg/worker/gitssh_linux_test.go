//go:build linux

package worker

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/gbb-ci/gbb/internal/testsshd"
	"github.com/gbb-ci/gbb/pkg/protocol"
)

// withKnownHosts runs f on a thread of its own, in a mount namespace of
// its own where dir is mounted over /etc/ssh: the commands f starts (git,
// and the ssh git starts) read dir/ssh_known_hosts as the system's known
// hosts, and nothing outside the test sees it. ssh finds the user's
// known_hosts through the password database, not $HOME, so this is how a
// test gives it a host key to trust.
func withKnownHosts(t *testing.T, dir string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, with its namespace, ends with the
		// goroutine.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare the mount namespace (needs root): %w", err)
			return
		}
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make mounts private: %w", err)
			return
		}
		if err := syscall.Mount(dir, "/etc/ssh", "", syscall.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("mount %s over /etc/ssh: %w", dir, err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestGitSSHKey fetches from sshd on loopback with ssh_private_key_file:
// the worker's GIT_SSH_COMMAND makes ssh use that key, and only it (sshd
// logs the key it accepted), never prompt, and check the host's key.
func TestGitSSHKey(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs sshd for root and mounts over /etc/ssh in a namespace of its own: run it as root")
	}
	keys := filepath.Join(t.TempDir(), "key dir's") // the path needs quoting
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	genKey := func(name string) (path, pub, fingerprint string) { return testsshd.GenKey(t, keys, name) }
	good, goodPub, goodFP := genKey("good")
	wrong, _, _ := genKey("wrong")
	garbage := filepath.Join(keys, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(keys, "nope")

	srv := testsshd.Start(t, goodPub)
	etc := t.TempDir()
	_, port, _ := net.SplitHostPort(srv.Addr)
	known := srv.KnownHosts()
	if err := os.WriteFile(filepath.Join(etc, "ssh_known_hosts"), []byte(known), 0o644); err != nil {
		t.Fatal(err)
	}
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{"f": "1"})
	url := "ssh://root@" + srv.Addr + src.dir
	// The same server under a name known_hosts does not list.
	unknownHost := "ssh://root@localhost:" + port + src.dir

	withKnownHosts(t, etc, func() {
		e := NewExecutor(t.TempDir(), nil)
		mustGit(t, e, protocol.GitCommand{RepoURL: url, Workdir: "build", SSHPrivateKeyFile: good}, c1)
		if log := srv.Log(); !strings.Contains(log, "Accepted publickey for root from 127.0.0.1") || !strings.Contains(log, goodFP) {
			t.Errorf("sshd did not accept the key %s (%s):\n%s", good, goodFP, log)
		}
		c2 := src.commit("second", map[string]string{"f": "2"})
		rec := mustGit(t, e, protocol.GitCommand{RepoURL: url, Workdir: "build", SSHPrivateKeyFile: good}, c2)
		if h := rec.get(protocol.Header); !strings.Contains(h, gitHeader("fetch", "-f", "--progress", "--", url, "main")) {
			t.Errorf("an update over ssh should fetch:\n%s", h)
		}

		for _, tt := range []struct {
			name, url, key, stderr string
		}{
			{"missing", url, missing, "fatal: ssh_private_key_file " + missing + ": open " + missing + ": no such file or directory"},
			{"not a key", url, garbage, `Load key "` + garbage + `": `},
			{"not authorized", url, wrong, "root@127.0.0.1: Permission denied (publickey)."},
			{"unknown host", unknownHost, good, "Host key verification failed."},
		} {
			res, rec := gitCmd(t, t.Context(), e, protocol.GitCommand{RepoURL: tt.url, Workdir: "other", SSHPrivateKeyFile: tt.key})
			if res.ExitCode != gitFatal || res.Err != "" {
				t.Errorf("%s: result = %+v, want exit code %d", tt.name, res, gitFatal)
			}
			if got := rec.get(protocol.Stderr); !strings.Contains(got, tt.stderr) {
				t.Errorf("%s: stderr = %q, want it to say %q", tt.name, got, tt.stderr)
			}
		}
	})
}
