package msgpack

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// heap is the live heap after a collection.
func heap() uint64 {
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	return s.HeapAlloc
}

// TestManyValuesRefused: a 16 MiB frame of nils (one byte each) is
// refused before decoding, not turned into 16 million interfaces.
// Not parallel: it measures allocations, which are counted process-wide.
func TestManyValuesRefused(t *testing.T) {
	n := maxMessage - 8
	data := binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(n))
	data = append(data, bytes.Repeat([]byte{0xc0}, n)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decode(data)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "values") {
		t.Errorf("16 MiB of nils: %v", err)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 1<<20 {
		t.Errorf("16 MiB of nils: %d bytes allocated", a)
	}
	// A message within the bound decodes.
	small := binary.BigEndian.AppendUint32([]byte{0x81, 0xa1, 'a', 0xdd}, 1000)
	small = append(small, bytes.Repeat([]byte{0xc0}, 1000)...)
	if m, err := decode(small); err != nil || len(m["a"].([]any)) != 1000 {
		t.Errorf("1000 nils: %v", err)
	}
}

// TestQueueBoundedInBytes: while the master's answers to a worker that
// does not read them hold up its handling, the worker's further requests
// are queued up to maxQueuedBytes, then reading stops: 160 MiB sent cost
// the master far less. Not parallel: it measures the heap.
func TestQueueBoundedInBytes(t *testing.T) {
	m := startMaster(t, map[string]string{"p": "pw"})
	ws, c := dial(t, m, "/", "p", "pw")
	base := heap()
	// Unknown ops, 1 MiB each: the master answers each with its name, and
	// the answers fill the socket until the handler blocks on one.
	op := strings.Repeat("x", 1<<20)
	for i := range 24 {
		ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteMessage(websocket.BinaryMessage, mustEncode(t, map[string]any{"op": op, "seq_number": i})); err != nil {
			t.Fatalf("echo request %d: %v", i, err)
		}
	}
	// Then 4 MiB requests until the master stops reading them.
	big := bytes.Repeat([]byte{'y'}, 4<<20)
	sent := 0
	for i := range 40 {
		ws.SetWriteDeadline(time.Now().Add(3 * time.Second))
		if err := ws.WriteMessage(websocket.BinaryMessage, mustEncode(t, map[string]any{"op": "update", "seq_number": 100 + i, "command_id": "c", "args": big})); err != nil {
			break
		}
		sent++
	}
	grown := int64(heap()) - int64(base)
	t.Logf("sent %d requests of 4 MiB before the master stopped reading; heap grew %d MiB", sent, grown>>20)
	if sent == 40 {
		t.Errorf("the master read all 160 MiB of requests while their handling was held up")
	}
	if grown > 96<<20 {
		t.Errorf("the master's heap grew %d MiB for one connection", grown>>20)
	}
	c.Close()
}

func mustEncode(t *testing.T, m map[string]any) []byte {
	t.Helper()
	b, err := encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
