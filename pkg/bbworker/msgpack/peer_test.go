package msgpack

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gbb-ci/gbb/pkg/bbworker"
)

// dial logs in to m as a hand-written peer speaking the real wire
// protocol (for what no real worker sends: hostile messages).
func dial(t *testing.T, m *master, path, name, password string) (*websocket.Conn, bbworker.Conn) {
	t.Helper()
	h := http.Header{"Authorization": {"Basic " + b64(name+":"+password)}}
	ws, resp, err := websocket.DefaultDialer.DialContext(t.Context(), "ws://"+m.addr+path, h)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	select {
	case c := <-m.conns:
		return ws, c
	case <-time.After(10 * time.Second):
		t.Fatal("the peer was not attached")
		return nil, nil
	}
}

func sendMsg(t *testing.T, ws *websocket.Conn, msg map[string]any) {
	t.Helper()
	b, err := encode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatal(err)
	}
}

func readMsg(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		m[k] = plain(v)
	}
	return m
}

func waitDone(t *testing.T, c bbworker.Conn, why string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection survived %s", why)
	}
}

func TestPeerAnswers(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"p": "pw"})
	// buildbot-worker 4.x may append a path to the URL (its "path").
	ws, c := dial(t, m, "/buildbot/ws", "p", "pw")
	// An op the master does not know, and an update for no command, get
	// buildbot's exception responses; a text frame is ignored.
	ws.WriteMessage(websocket.TextMessage, []byte("hello"))
	sendMsg(t, ws, map[string]any{"op": "frobnicate", "seq_number": 0})
	r := readMsg(t, ws)
	if r["op"] != "response" || r["seq_number"] != int64(0) || r["is_exception"] != true || r["result"] != "Command frobnicate does not exist." {
		t.Errorf("unknown op: %v", r)
	}
	sendMsg(t, ws, map[string]any{"op": "update", "seq_number": 300, "command_id": "nope", "args": []any{}})
	r = readMsg(t, ws)
	if r["seq_number"] != int64(300) || r["is_exception"] != true || r["result"] != `unknown "command_id"` {
		t.Errorf("update of no command: %v", r)
	}
	// A response nobody waits for is dropped; the connection stays.
	sendMsg(t, ws, map[string]any{"op": "response", "seq_number": 77, "result": nil})
	// The master's calls round-trip with its own seq_numbers.
	errc := make(chan error, 1)
	go func() { errc <- c.Print(t.Context(), "hi") }()
	r = readMsg(t, ws)
	if r["op"] != "print" || r["message"] != "hi" {
		t.Fatalf("print: %v", r)
	}
	sendMsg(t, ws, map[string]any{"op": "response", "seq_number": r["seq_number"], "result": nil})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { errc <- c.Keepalive(t.Context()) }()
	r = readMsg(t, ws)
	sendMsg(t, ws, map[string]any{"op": "response", "seq_number": r["seq_number"], "result": "boom", "is_exception": true})
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "keepalive: boom") {
		t.Errorf("keepalive answered with an exception: %v", err)
	}
}

func TestHostilePeer(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"p": "pw"})
	for _, tc := range []struct {
		name string
		data []byte
	}{
		// 100,000 nested arrays in a well-formed update would recurse
		// the decoder that deep.
		{"nesting", nested(100_000)},
		{"size", append([]byte{0xc6, 0x01, 0x00, 0x00, 0x10}, make([]byte, maxMessage+16)...)},
		{"announced", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}},
		{"not a map", []byte{0x93, 0x01, 0x02, 0x03}},
	} {
		ws, c := dial(t, m, "/", "p", "pw")
		ws.WriteMessage(websocket.BinaryMessage, tc.data)
		waitDone(t, c, tc.name)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	good, _ := encode(map[string]any{"op": "update", "seq_number": 70000, "args": []any{
		[]any{"stdout", []any{"a\n", []any{1}, []any{1.5}}}, []any{"rc", -3}, []any{"data", []byte{0, 1, 2}},
	}})
	if _, err := check(good); err != nil {
		t.Errorf("a real message: %v", err)
	}
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0xc0),
		"reserved":  {0xc1},
		"deep":      append(bytes.Repeat([]byte{0x91}, maxDepth+1), 0xc0),
		"str32":     {0xdb, 0xff, 0xff, 0xff, 0xff},
		"elements":  append([]byte{0xdd, 0, 0x08, 0, 0x01}, bytes.Repeat([]byte{0xc0}, maxElements+1)...),
	} {
		if _, err := check(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDuplicateWorker(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"w1": "pass1"})
	a := startWorker(t, m.addr, "w1", "pass1")
	ca := m.waitConn(t, a)
	b := startWorker(t, m.addr, "w1", "pass1")
	// The old connection answers the ping: the new one is refused, as
	// buildbot's master does.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(m.log.String(), "refusing the duplicate connection") {
		if time.Now().After(deadline) {
			t.Fatalf("the duplicate was not refused; master log:\n%s", m.log)
		}
		time.Sleep(20 * time.Millisecond) // polling a log: there is no event to wait on
	}
	if err := ca.Keepalive(t.Context()); err != nil {
		t.Fatalf("the first connection did not survive the duplicate: %v", err)
	}
	// The old worker stops answering (SIGSTOP keeps its socket open):
	// the next attempt of the new one replaces it after the ping times out.
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.cmd.Process.Signal(syscall.SIGCONT) })
	cb := m.waitConn(t, b)
	waitDone(t, ca, "its replacement")
	info, err := cb.GetWorkerInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info["basedir"] != b.dir {
		t.Errorf("the attached worker is %v, want the new one in %s", info["basedir"], b.dir)
	}
}

// nested is an update whose args nest n arrays deep.
func nested(n int) []byte {
	head, _ := encode(map[string]any{"op": "update", "seq_number": 0, "command_id": "x"})
	head[0]++ // one more key: args
	head = append(head, 0xa4, 'a', 'r', 'g', 's')
	head = append(head, bytes.Repeat([]byte{0x91}, n)...)
	return append(head, 0xc0)
}

func TestGuessingBraked(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"p": "pw"})
	try := func(from, password string) int {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "http://"+m.addr+"/", nil)
		req.Header.Set("Authorization", "Basic "+b64("p:"+password))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range loginBurst {
		if code := try("127.0.0.1", "guess"); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	// Past the burst the address is refused before its password is
	// checked, the right one too.
	if code := try("127.0.0.1", "pw"); code != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", loginBurst, code)
	}
	// The refusals are logged sampled: a few, then one per interval.
	if n := strings.Count(m.log.String(), "buildbot-worker refused"); n == 0 || n > 6 {
		t.Errorf("%d refusals logged for %d, want a few:\n%s", n, loginBurst+1, m.log)
	}
	// Another address is not slowed: its right password gets to the
	// upgrade (400: this request is no WebSocket upgrade).
	if code := try("127.0.0.2", "pw"); code != http.StatusBadRequest {
		t.Errorf("another address: %d, want 400 (past the password check)", code)
	}
}

// TestRefusalsLogged: the log says whether a refused name exists (the
// peer is told only "Unauthorized"); headers past 16 KiB are refused.
func TestRefusalsLogged(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"p": "pw"})
	try := func(name, password string, extra int) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+m.addr+"/", nil)
		req.Header.Set("Authorization", "Basic "+b64(name+":"+password))
		if extra > 0 {
			req.Header.Set("X-Pad", strings.Repeat("a", extra))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct{ name, password, log string }{
		{"nobody", "pw", "known_name=false reason=\"unknown worker\""},
		{"p", "guess", "known_name=true reason=\"wrong password\""},
	} {
		code, body := try(tc.name, tc.password, 0)
		if code != http.StatusUnauthorized || strings.TrimSpace(body) != "Unauthorized" {
			t.Errorf("%s: %d %q, want 401 Unauthorized", tc.name, code, body)
		}
		if !strings.Contains(m.log.String(), tc.log) {
			t.Errorf("%s: the log does not say %s:\n%s", tc.name, tc.log, m.log)
		}
	}
	if code, _ := try("p", "pw", 20<<10); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("20 KiB of headers: %d, want 431", code)
	}
	if code, _ := try("p", "pw", 12<<10); code == http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("12 KiB of headers: %d", code)
	}
}
