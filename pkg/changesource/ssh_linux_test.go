//go:build linux

package changesource

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// stallRelay forwards loopback connections to target. Once stall is set,
// a connection on which the server sends more than 256 KiB (the fetch of
// a pack of a MiB; a listing sends a few KiB) passes nothing more after
// them: the remote stops in the middle of the pack.
type stallRelay struct {
	addr    string
	stall   atomic.Bool
	stalled chan struct{} // a value when a connection is held
	closed  chan struct{} // a value when the poller closed a held one
}

func relayTo(t *testing.T, target string) *stallRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sr := &stallRelay{addr: ln.Addr().String(), stalled: make(chan struct{}, 10), closed: make(chan struct{}, 10)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn // guarded by mu
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			limit := int64(-1)
			if sr.stall.Load() {
				limit = 256 << 10
			}
			held := make(chan struct{})
			wg.Go(func() {
				io.Copy(s, c) // the poller's side; ends when it closes
				s.Close()
				select {
				case <-held:
					sr.closed <- struct{}{}
				default:
				}
			})
			wg.Go(func() {
				if limit < 0 {
					io.Copy(c, s)
					c.Close()
					return
				}
				if n, _ := io.CopyN(c, s, limit); n < limit {
					c.Close() // the server ended first: a listing
					return
				}
				close(held)
				sr.stalled <- struct{}{}
				// Hold: read nothing more from the server, write nothing
				// more to the poller, until the poller gives up.
			})
		}
	})
	return sr
}

// TestPollSSHStalledFetch polls through a relay to sshd that, in the
// middle of the pack of a fetch, stops passing bytes: the poll is cut at
// PollTimeout with an error saying so, its connection closed, the state
// unchanged; once the remote answers again, the next poll announces the
// commit.
func TestPollSSHStalledFetch(t *testing.T) {
	keys := t.TempDir()
	good, goodPub, _ := testsshd.GenKey(t, keys, "good")
	srv := testsshd.Start(t, goodPub)
	sr := relayTo(t, srv.Addr)
	_, port, _ := net.SplitHostPort(sr.addr)
	known := filepath.Join(t.TempDir(), "known_hosts")
	_, srvPort, _ := net.SplitHostPort(srv.Addr)
	kh := strings.ReplaceAll(srv.KnownHosts(), "[127.0.0.1]:"+srvPort, "[127.0.0.1]:"+port)
	if err := os.WriteFile(known, []byte(kh), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{
		RepoURL: "ssh://root@" + sr.addr + r.dir, SSHKeyFile: good, SSHKnownHostsFile: known,
	}, db)
	// Only the stalled poll is bounded by a short poll_timeout: the clone
	// before it and the fetch after it take longer than 3 s on a loaded
	// machine.
	poll(t, p)
	state, _, _ := db.GetState(p.Name(), "lastRev")
	p.cfg.PollTimeout = 3 * time.Second

	// A commit whose pack is far bigger than what the relay lets through.
	big := make([]byte, 1<<20)
	rand.Read(big)
	c1 := r.commit("big", "blob", hex.EncodeToString(big))
	sr.stall.Store(true)
	done := make(chan error, 1)
	go func() { done <- p.Poll(t.Context()) }()
	within(t, sr.stalled, time.Minute, "the fetch stalling")
	err := within(t, done, time.Minute, "Poll returning from a stalled fetch")
	if !errors.Is(err, ErrPollTimeout) || !strings.Contains(err.Error(), "poll timed out after 3s (poll_timeout)") {
		t.Errorf("a stalled poll returned %v, want ErrPollTimeout", err)
	}
	within(t, sr.closed, 10*time.Second, "the stalled connection closing")
	if now, _, _ := db.GetState(p.Name(), "lastRev"); string(now) != string(state) {
		t.Errorf("the stalled poll changed the state: %s, was %s", now, state)
	}

	sr.stall.Store(false)
	p.cfg.PollTimeout = DefaultPollTimeout
	poll(t, p)
	if diff := cmp.Diff([]brief{{"main", c1, "big"}}, briefs(rec.take())); diff != "" {
		t.Errorf("announced after the stall (-want +got):\n%s", diff)
	}
}
