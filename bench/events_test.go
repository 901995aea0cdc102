package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// watcher observes a master's builds through its /ws events, as buildbot's
// web UI does: one WebSocket, `startConsuming` on the paths below, and the
// events pushed to it. Both gbb and buildbot 3.7 (www/ws.py) speak this
// protocol, so the bench observes completion the same way on both and
// loads neither with polls.
//
// Each event is stamped with the time its frame was read, so a waiter
// that registers late (the event arrived before force returned) still gets
// the event's own time.
type watcher struct {
	sys  string
	conn *websocket.Conn
	done chan struct{} // closed when the reader stops

	mu       sync.Mutex
	err      error                     // why the reader stopped
	complete map[int64]time.Time       // buildrequestid → complete event
	newBuild map[int64][]time.Time     // builderid → its builds' new events, in order
	finished map[int64][]time.Time     // builderid → its builds' finished events, in order
	acks     map[int]chan string       // _id → answer
	waits    map[int64][]chan struct{} // buildrequestid → waiters
	bwaits   map[int64][]chan struct{} // builderid → waiters for a new build
	nextID   int
}

// watchPaths are the event paths the bench consumes: a request's
// completion (what force → complete measures), a build's start (what
// change → build started measures) and its end. Both systems publish
// these keys.
var watchPaths = []string{"buildrequests/*/complete", "builds/*/new", "builds/*/finished"}

// watch opens inst's /ws and consumes watchPaths; it returns once both
// subscriptions are acknowledged, so every later event is seen.
func watch(b *testing.B, inst *instance) *watcher {
	b.Helper()
	u := fmt.Sprintf("ws://127.0.0.1:%d/ws", inst.webPort)
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	conn, resp, err := d.Dial(u, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		b.Fatalf("%s: dial %s: %v %s", inst.sys.name(), u, err, status)
	}
	w := &watcher{
		sys: inst.sys.name(), conn: conn, done: make(chan struct{}),
		complete: map[int64]time.Time{}, newBuild: map[int64][]time.Time{}, finished: map[int64][]time.Time{},
		acks: map[int]chan string{}, waits: map[int64][]chan struct{}{}, bwaits: map[int64][]chan struct{}{},
	}
	go w.read()
	b.Cleanup(w.close)
	for _, p := range watchPaths {
		w.command(b, "startConsuming", p)
	}
	return w
}

func (w *watcher) close() {
	w.conn.Close()
	<-w.done
}

// command sends one frame and waits for its acknowledgement.
func (w *watcher) command(b *testing.B, cmd, path string) {
	b.Helper()
	w.mu.Lock()
	w.nextID++
	id := w.nextID
	ack := make(chan string, 1)
	w.acks[id] = ack
	w.mu.Unlock()
	frame, _ := json.Marshal(map[string]any{"cmd": cmd, "path": path, "_id": id})
	if err := w.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
		b.Fatalf("%s /ws %s: %v", w.sys, cmd, err)
	}
	select {
	case msg := <-ack:
		if msg != "" {
			b.Fatalf("%s /ws %s %s: %s", w.sys, cmd, path, msg)
		}
	case <-w.done:
		b.Fatalf("%s /ws closed: %v", w.sys, w.err)
	case <-time.After(time.Minute):
		b.Fatalf("%s /ws %s %s: no answer in a minute", w.sys, cmd, path)
	}
}

// frame is what either server sends: an answer (_id, code, msg or error)
// or an event (k, m).
type frame struct {
	ID    *int            `json:"_id"`
	Code  int             `json:"code"`
	Error string          `json:"error"`
	K     string          `json:"k"`
	M     json.RawMessage `json:"m"`
}

func (w *watcher) read() {
	defer close(w.done)
	for {
		_, data, err := w.conn.ReadMessage()
		at := time.Now()
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			w.mu.Lock()
			w.err = fmt.Errorf("bad frame %.200q: %v", data, err)
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		switch {
		case f.K != "":
			w.event(f.K, f.M, at)
		case f.ID != nil:
			if ack, ok := w.acks[*f.ID]; ok {
				delete(w.acks, *f.ID)
				msg := ""
				if f.Code != 200 {
					msg = fmt.Sprintf("%d %s", f.Code, f.Error)
				}
				ack <- msg
			}
		}
		w.mu.Unlock()
	}
}

// event records one event; w.mu is held.
func (w *watcher) event(k string, m json.RawMessage, at time.Time) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 {
		return
	}
	id, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return
	}
	switch {
	case parts[0] == "buildrequests" && parts[2] == "complete":
		if _, seen := w.complete[id]; !seen {
			w.complete[id] = at
		}
		for _, c := range w.waits[id] {
			close(c)
		}
		delete(w.waits, id)
	case parts[0] == "builds" && (parts[2] == "new" || parts[2] == "finished"):
		var rec struct {
			BuilderID int64 `json:"builderid"`
		}
		if json.Unmarshal(m, &rec) != nil {
			return
		}
		if parts[2] == "new" {
			w.newBuild[rec.BuilderID] = append(w.newBuild[rec.BuilderID], at)
		} else {
			w.finished[rec.BuilderID] = append(w.finished[rec.BuilderID], at)
		}
		for _, c := range w.bwaits[rec.BuilderID] {
			close(c)
		}
		delete(w.bwaits, rec.BuilderID)
	}
}

// waitComplete waits for request brid's complete event and returns when
// it arrived.
func (w *watcher) waitComplete(b *testing.B, brid int64, timeout time.Duration) time.Time {
	b.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		at, ok := w.complete[brid]
		var c chan struct{}
		if !ok {
			c = make(chan struct{})
			w.waits[brid] = append(w.waits[brid], c)
		}
		w.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-c:
		case <-w.done:
			b.Fatalf("%s /ws closed while waiting for request %d: %v", w.sys, brid, w.err)
		case <-deadline:
			b.Fatalf("%s: request %d not complete after %v", w.sys, brid, timeout)
		}
	}
}

// builds is how many builds of builderid have started since the watcher
// subscribed.
func (w *watcher) builds(builderid int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.newBuild[builderid])
}

// waitBuild waits for the (n+1)th build of builderid since the watcher
// subscribed and returns when its new event arrived.
func (w *watcher) waitBuild(b *testing.B, builderid int64, n int, timeout time.Duration) time.Time {
	b.Helper()
	return w.waitBuilder(b, w.newBuild, "started", builderid, n, timeout)
}

// waitFinished waits until n+1 builds of builderid have finished since the
// watcher subscribed.
func (w *watcher) waitFinished(b *testing.B, builderid int64, n int, timeout time.Duration) time.Time {
	b.Helper()
	return w.waitBuilder(b, w.finished, "finished", builderid, n, timeout)
}

func (w *watcher) waitBuilder(b *testing.B, m map[int64][]time.Time, what string, builderid int64, n int, timeout time.Duration) time.Time {
	b.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		ts := m[builderid]
		var c chan struct{}
		if len(ts) <= n {
			c = make(chan struct{})
			w.bwaits[builderid] = append(w.bwaits[builderid], c)
		}
		w.mu.Unlock()
		if len(ts) > n {
			return ts[n]
		}
		select {
		case <-c:
		case <-w.done:
			b.Fatalf("%s /ws closed while waiting for a build of builder %d: %v", w.sys, builderid, w.err)
		case <-deadline:
			b.Fatalf("%s: build %d of builder %d not %s after %v", w.sys, n+1, builderid, what, timeout)
		}
	}
}

// peakRunning is the most builds running at once after t0, from the new
// and finished events (read in order, so their times order them).
func (w *watcher) peakRunning(t0 time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	type step struct {
		at time.Time
		d  int
	}
	var steps []step
	for _, ts := range w.newBuild {
		for _, t := range ts {
			if !t.Before(t0) {
				steps = append(steps, step{t, 1})
			}
		}
	}
	for _, ts := range w.finished {
		for _, t := range ts {
			if !t.Before(t0) {
				steps = append(steps, step{t, -1})
			}
		}
	}
	slices.SortStableFunc(steps, func(a, b step) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d // read at the same instant: count the end first (no overcount)
	})
	n, peak := 0, 0
	for _, s := range steps {
		n += s.d
		peak = max(peak, n)
	}
	return peak
}
