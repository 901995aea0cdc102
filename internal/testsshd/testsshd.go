package testsshd

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gbb-ci/gbb/internal/testdeb"
)

// Server is sshd on a loopback port, one sshd -i per connection, logging
// to Log.
type Server struct {
	Addr    string // 127.0.0.1:port
	HostKey string // the public host key, as in a .pub file

	mu  sync.Mutex
	log bytes.Buffer // guarded by mu
}

// Log returns what sshd logged so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// KnownHosts is a known_hosts line for the server's address and host key.
func (s *Server) KnownHosts() string {
	host, port, _ := net.SplitHostPort(s.Addr)
	return fmt.Sprintf("[%s]:%s %s", host, port, s.HostKey)
}

// Start starts sshd for root, with authorized as its only authorized key,
// until the test ends. It needs root.
func Start(t testing.TB, authorized string) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("sshd runs for root in this test: run it as root")
	}
	sshd := testdeb.Need(t, "sshd", "openssh-server")
	dir := t.TempDir()
	hostKey, pub, _ := GenKey(t, dir, "host_ed25519")
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(authorized), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "sshd_config")
	err := os.WriteFile(config, fmt.Appendf(nil, `HostKey %s
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
	s := &Server{Addr: ln.Addr().String(), HostKey: pub}
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
			t.Logf("sshd's log:\n%s", s.Log())
		}
	})
	return s
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// GenKey makes an ed25519 key without a passphrase in dir/name, and
// returns its path, its public key (as in a .pub file) and its SHA256
// fingerprint.
func GenKey(t testing.TB, dir, name string) (path, pub, fingerprint string) {
	t.Helper()
	keygen := testdeb.Need(t, "ssh-keygen", "openssh-client")
	path = filepath.Join(dir, name)
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
