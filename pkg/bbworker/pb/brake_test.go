package pb

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// dialPBFrom is dialPB from the source address from.
func dialPBFrom(t *testing.T, addr, from string) *pbClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(time.Minute))
	dec := newDecoder(nc)
	offer, err := dec.expr()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{[]byte("pb"), []byte("none")}, offer); diff != "" {
		t.Fatalf("dialect offer (-want +got):\n%s", diff)
	}
	c := &pbClient{t: t, nc: nc, dec: dec}
	c.send("pb")
	dec.vocab = true
	c.read()
	c.send([]any{"version", int64(6)})
	return c
}

// TestGuessingBraked: past loginBurst wrong passwords from an address,
// its logins are refused before their response is checked (the right
// password too), as on the msgpack and gRPC ports; another address logs
// in.
func TestGuessingBraked(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	failures := 0
	for failures < loginBurst {
		c := dialPBFrom(t, m.addr, "127.0.0.3")
		for range min(maxLoginFailures, loginBurst-failures) {
			if kind, _ := c.login("w1", "guess"); kind != "error" {
				t.Fatalf("guess %d: %s", failures, kind)
			}
			failures++
		}
	}
	c := dialPBFrom(t, m.addr, "127.0.0.3")
	kind, v := c.login("w1", "sekrit")
	var u unjellier
	f, _ := u.unjelly(v)
	if kind != "error" || !strings.Contains(failureText(f), "too many failed logins") {
		t.Errorf("after %d failures, the right password: %s %q", loginBurst, kind, failureText(f))
	}
	closedByServer(t, c.nc)
	if kind, v := dialPBFrom(t, m.addr, "127.0.0.4").login("w1", "sekrit"); kind != "answer" {
		t.Errorf("another address: %s %v", kind, v)
	}
}
