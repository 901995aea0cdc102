//go:build linux

package worker

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/protocol"
)

// sshServer is OpenSSH's sshd on a loopback port, one sshd -i per
// connection, logging to log.
type sshServer struct {
	addr    string // 127.0.0.1:port
	hostKey string // the public host key, as in a .pub file
	mu      sync.Mutex
	log     bytes.Buffer // guarded by mu
}

func (s *sshServer) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startSSHServer starts sshd for root, with authorized as its only
// authorized key.
func startSSHServer(t *testing.T, authorized string) *sshServer {
	t.Helper()
	sshd := testdeb.Need(t, "sshd", "openssh-server")
	keygen := testdeb.Need(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(authorized), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "sshd_config")
	err = os.WriteFile(config, fmt.Appendf(nil, `HostKey %s
AuthorizedKeysFile %s
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
PidFile none
LogLevel VERBOSE
`, hostKey, filepath.Join(dir, "authorized_keys")), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// sshd's privilege separation directory, which the service makes.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sshd, "-t", "-f", config).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{addr: ln.Addr().String(), hostKey: string(pub)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var cmds []*exec.Cmd // guarded by mu
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				t.Errorf("connection's file: %v", err)
				continue
			}
			cmd := exec.Command(sshd, "-i", "-e", "-f", config)
			cmd.Stdin, cmd.Stdout = f, f
			cmd.Stderr = writerFunc(func(p []byte) (int, error) {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.log.Write(p)
			})
			err = cmd.Start()
			f.Close()
			if err != nil {
				t.Errorf("start sshd -i: %v", err)
				continue
			}
			mu.Lock()
			cmds = append(cmds, cmd)
			mu.Unlock()
			wg.Go(func() { _ = cmd.Wait() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
		mu.Unlock()
		wg.Wait()
		if t.Failed() {
			t.Logf("sshd's log:\n%s", s.logText())
		}
	})
	return s
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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
	keygen := testdeb.Need(t, "ssh-keygen", "openssh-client")
	keys := filepath.Join(t.TempDir(), "key dir's") // the path needs quoting
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	genKey := func(name string) (path, pub, fingerprint string) {
		path = filepath.Join(keys, name)
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		b, err := os.ReadFile(path + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(keygen, "-l", "-f", path+".pub").Output()
		if err != nil {
			t.Fatalf("ssh-keygen -l: %v", err)
		}
		return path, string(b), strings.Fields(string(out))[1]
	}
	good, goodPub, goodFP := genKey("good")
	wrong, _, _ := genKey("wrong")
	garbage := filepath.Join(keys, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(keys, "nope")

	srv := startSSHServer(t, goodPub)
	etc := t.TempDir()
	_, port, _ := net.SplitHostPort(srv.addr)
	known := fmt.Sprintf("[127.0.0.1]:%s %s", port, srv.hostKey)
	if err := os.WriteFile(filepath.Join(etc, "ssh_known_hosts"), []byte(known), 0o644); err != nil {
		t.Fatal(err)
	}
	src := newTestRepo(t)
	c1 := src.commit("first", map[string]string{"f": "1"})
	url := "ssh://root@" + srv.addr + src.dir
	// The same server under a name known_hosts does not list.
	unknownHost := "ssh://root@localhost:" + port + src.dir

	withKnownHosts(t, etc, func() {
		e := NewExecutor(t.TempDir(), nil)
		mustGit(t, e, protocol.GitCommand{RepoURL: url, Workdir: "build", SSHPrivateKeyFile: good}, c1)
		if log := srv.logText(); !strings.Contains(log, "Accepted publickey for root from 127.0.0.1") || !strings.Contains(log, goodFP) {
			t.Errorf("sshd did not accept the key %s (%s):\n%s", good, goodFP, log)
		}
		c2 := src.commit("second", map[string]string{"f": "2"})
		rec := mustGit(t, e, protocol.GitCommand{RepoURL: url, Workdir: "build", SSHPrivateKeyFile: good}, c2)
		if h := rec.get(protocol.Header); !strings.Contains(h, gitHeader("fetch", "-f", "--progress", url, "main")) {
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
