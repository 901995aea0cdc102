package msgpack

import (
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// These tests measure the process's heap, so they do not run in parallel
// (Go runs them before the parallel tests start).

// heap is the live heap after a collection, and the bytes allocated so
// far.
func heap() (live, total uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.TotalAlloc
}

const mib = 1 << 20

// TestNilsFrameBounded: a logged-in peer's 16 MiB frame of array32 nils
// (16 bytes each once decoded: 256 MiB) is refused before it is decoded;
// the master allocates about the frame, and says why it drops the peer.
func TestNilsFrameBounded(t *testing.T) {
	m := startMaster(t, map[string]string{"p": "pw"})
	ws, c := dial(t, m, "/", "p", "pw")
	head, _ := encode(map[string]any{"op": "update", "seq_number": 0, "command_id": "x"})
	head[0]++ // one more key: args
	head = append(head, 0xa4, 'a', 'r', 'g', 's', 0xdd, 0, 0, 0, 0)
	n := maxMessage - len(head)
	binary.BigEndian.PutUint32(head[len(head)-4:], uint32(n))
	frame := append(head, make([]byte, n)...)
	for i := len(head); i < len(frame); i++ {
		frame[i] = 0xc0
	}
	_, before := heap()
	if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		t.Fatal(err)
	}
	// Either the master drops the peer, or it answers (an update for no
	// command): then the frame was decoded.
	answered := make(chan bool, 1)
	go func() {
		ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _, err := ws.ReadMessage()
		answered <- err == nil
	}()
	select {
	case <-c.Done():
	case ok := <-answered:
		if ok {
			t.Error("the master decoded and answered the frame of 16 M nils")
		}
	}
	_, after := heap()
	t.Logf("the master allocated %d MiB for a %d MiB frame", (after-before)/mib, len(frame)/mib)
	if d := after - before; d > 96*mib {
		t.Errorf("the master allocated %d MiB for a %d MiB frame of nils; want at most 96 MiB", d/mib, len(frame)/mib)
	}
	waitDone(t, c, "a frame of too many elements")
	if !strings.Contains(m.log.String(), "more than 524288 elements") {
		t.Errorf("the master log does not say why it dropped the peer:\n%s", m.log)
	}
}

// TestUnreadAnswersBounded: a logged-in peer that sends 8 MiB requests
// (an unknown op, whose error answer echoes it) and never reads the
// answers gets the master to stop reading once the requests read and not
// handled reach maxQueuedCost: its heap stays bounded, where 24 requests
// read and queued by count would hold 192 MiB.
func TestUnreadAnswersBounded(t *testing.T) {
	m := startMaster(t, map[string]string{"p": "pw"})
	ws, c := dial(t, m, "/", "p", "pw")
	frame, err := encode(map[string]any{"op": strings.Repeat("x", 8*mib), "seq_number": 0})
	if err != nil {
		t.Fatal(err)
	}
	const frames = 24
	base, _ := heap()
	sent := make(chan int, 1)
	go func() {
		i := 0
		for ; i < frames; i++ {
			// The master not reading for 10 s: it stopped.
			ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
				break
			}
		}
		sent <- i
	}()
	var n int
	select {
	case n = <-sent:
	case <-time.After(2 * time.Minute):
		t.Fatal("the peer's writes neither ended nor timed out")
	}
	live, _ := heap()
	t.Logf("%d of %d frames of %d MiB sent; the heap grew by %d MiB", n, frames, len(frame)/mib, (live-base)/mib)
	if n == frames {
		t.Errorf("the master read all %d frames of %d MiB of a peer that reads no answer", frames, len(frame)/mib)
	}
	if live > base && live-base > 96*mib {
		t.Errorf("the heap grew by %d MiB; want at most 96 MiB", (live-base)/mib)
	}
	select {
	case <-c.Done():
		t.Fatal("the connection was dropped before its answers' write timeout")
	default:
	}
}
