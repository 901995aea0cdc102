package testsshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Frozen stands in for a frozen sshd: it accepts TCP connections on a
// loopback port and never writes to them. Each accepted connection is sent
// on Accepted; Closed gets one value per connection the other side
// closed. Both are buffered for 100.
type Frozen struct {
	Addr     string // 127.0.0.1:port
	Accepted chan struct{}
	Closed   chan struct{}
}

// StartFrozen starts a Frozen until the test ends.
func StartFrozen(t testing.TB) *Frozen {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Frozen{Addr: ln.Addr().String(), Accepted: make(chan struct{}, 100), Closed: make(chan struct{}, 100)}
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
			f.Accepted <- struct{}{}
			wg.Go(func() {
				io.Copy(io.Discard, c) // returns when the client closes it
				f.Closed <- struct{}{}
			})
		}
	})
	return f
}

// ClientFiles writes into dir an unencrypted ed25519 key (id_ed25519) and
// a known_hosts file naming a made-up host key for addr, for a client of a
// server that never gets as far as checking either.
func ClientFiles(t testing.TB, dir, addr string) (key, knownHosts string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	knownHosts = filepath.Join(dir, "known_hosts")
	line := "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(pub))
	if err := os.WriteFile(knownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, knownHosts
}
