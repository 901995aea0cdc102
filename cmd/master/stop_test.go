package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestStopWithHungSSHPoll runs the real master with a git poller of an
// ssh remote that accepts the connection and never sends its greeting (a
// frozen sshd), polled at launch: `gbb-master stop` returns within
// seconds, not after its minute of waiting, and master.log says
// "stopping", with the signal, before the master's last words.
func TestStopWithHungSSHPoll(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 10)
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
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted <- struct{}{}
			wg.Go(func() { io.Copy(io.Discard, c) })
		}
	})

	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	known := "[127.0.0.1]:" + port + " " + string(ssh.MarshalAuthorizedKey(pub))
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(known), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`buildbot_url = "http://127.0.0.1/"
[protocols.grpc]
port = 0
interface = "127.0.0.1"
[www]
port = 0
interface = "127.0.0.1"

[[change_source]]
type = "git_poller"
repourl = "ssh://git@127.0.0.1:%s/src.git"
ssh_private_key_file = "id_ed25519"
ssh_known_hosts_file = "known_hosts"
poll_at_launch = true
`, port)
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildMaster(t)
	runMaster(t, bin, "start", dir)
	select {
	case <-accepted:
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
