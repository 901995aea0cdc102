package msgpack

import (
	"net"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/connlimit"
)

// TestLoggedInNotEvicted: on a port whose max_connections caps the
// connections not logged in (connlimit's Evict, as the master listens), a
// logged-in worker no longer counts: a new connection over the cap does
// not close it to make room.
func TestLoggedInNotEvicted(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := connlimit.New(ln, connlimit.Config{Name: "msgpack port", Max: 1, Evict: true})
	m := startMasterOn(t, cl, map[string]string{"p": "pw"})
	ws, c := dial(t, m, "/", "p", "pw")
	raw, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	src := connlimit.Source(raw.LocalAddr())
	deadline := time.Now().Add(10 * time.Second)
	for total, _ := cl.Open(src); total < 2; total, _ = cl.Open(src) {
		select {
		case <-c.Done():
			t.Fatal("the logged-in worker's connection was closed to make room for a new one")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener has %d connections, want 2", total)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter: there is no event to wait on
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Print(t.Context(), "still here") }()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("the logged-in worker's connection: %v", err)
	}
	r, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	sendMsg(t, ws, map[string]any{"op": "response", "seq_number": r["seq_number"], "result": nil})
	if err := <-errc; err != nil {
		t.Fatalf("print on the logged-in worker: %v", err)
	}
}
