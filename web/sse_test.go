package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
)

// liveFixture is a served Server over a real store that publishes to a
// real bus.
type liveFixture struct {
	db      *store.DB
	bus     *events.Bus
	srv     *Server
	base    string // http://127.0.0.1:port
	builder store.Builder
	stop    func() // ends Serve and waits for it
}

func newLiveServer(t *testing.T, busCfg events.Config) *liveFixture {
	t.Helper()
	return newLiveServerWith(t, busCfg, nil)
}

// newLiveServerWith is newLiveServer, with the server's Config changed by
// cfg (when not nil) over the fixture's store.
func newLiveServerWith(t *testing.T, busCfg events.Config, cfg func(*Config, *store.DB)) *liveFixture {
	t.Helper()
	if busCfg.FirstID == 0 {
		busCfg.FirstID = 1
	}
	bus := events.New(busCfg)
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: bus})
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.EnsureBuilder("runtests")
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Store: db, Events: bus}
	if cfg != nil {
		cfg(&c, db)
	}
	srv := New(c)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return after its context was done")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if err := db.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		db.Close()
	})
	return &liveFixture{db: db, bus: bus, srv: srv, base: "http://" + lis.Addr().String(), builder: b, stop: stop}
}

// sseEvent is one event of a stream.
type sseEvent struct {
	ID    string
	Event string
	Data  string
	Retry string
}

// sseStream reads a text/event-stream.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

// listen opens an SSE stream at url with the given Last-Event-ID ("" for
// none); it is closed at cleanup.
func listen(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	s := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next reads the next event, skipping comments; it fails the test after a
// few seconds.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	type result struct {
		ev  sseEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var ev sseEvent
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				ch <- result{err: err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					ch <- result{ev: ev}
					return
				}
			case strings.HasPrefix(line, ":"):
			default:
				field, value, _ := strings.Cut(line, ": ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Event = value
				case "data":
					ev.Data = value
				case "retry":
					ev.Retry = value
				}
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			s.t.Fatalf("read event: %v", r.err)
		}
		return r.ev
	case <-time.After(5 * time.Second):
		s.close()
		s.t.Fatal("no event within 5s")
	}
	return sseEvent{}
}

// handshake reads the handshake and returns the listener's uuid.
func (s *sseStream) handshake() string {
	s.t.Helper()
	ev := s.next()
	if ev.Event != "handshake" || ev.Data == "" || ev.Retry == "" {
		s.t.Fatalf("first event %+v, want a handshake with retry", ev)
	}
	return ev.Data
}

// event reads the next event and decodes it.
func (s *sseStream) event() (id, key string, msg map[string]any) {
	s.t.Helper()
	ev := s.next()
	if ev.Event != "event" {
		s.t.Fatalf("got %+v, want an event", ev)
	}
	var d struct {
		Key     string         `json:"key"`
		Message map[string]any `json:"message"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
		s.t.Fatalf("data %q: %v", ev.Data, err)
	}
	return ev.ID, d.Key, d.Message
}

// apiElement returns the one element of an API path, decoded as a
// client decodes it.
func apiElement(t *testing.T, base, path, plural string) map[string]any {
	t.Helper()
	resp, err := http.Get(base + "/api/v2" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env map[string]json.RawMessage
	var list []map[string]any
	if json.Unmarshal(body, &env) != nil || json.Unmarshal(env[plural], &list) != nil || len(list) != 1 {
		t.Fatalf("%s: %s", path, body)
	}
	return list[0]
}

func TestSSEBuildEvents(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	s := listen(t, f.base+"/sse/listen/builds/*/*", "")
	s.handshake()
	if h := s.resp.Header; h.Get("Content-Type") != "text/event-stream" || h.Get("X-Accel-Buffering") != "no" {
		t.Errorf("headers %v", h)
	}
	b, err := f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID, StateString: "created"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.AddStep(b.ID, "compile"); err != nil { // not on this path
		t.Fatal(err)
	}
	if err := f.db.FinishBuild(b.ID, store.Success, time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, key, msg := s.event()
	if key != "builds/1/new" || msg["complete"] != false || msg["results"] != nil {
		t.Errorf("first event %s %v", key, msg)
	}
	_, key, msg = s.event()
	if key != "builds/1/finished" {
		t.Errorf("second event %s", key)
	}
	if d := cmp.Diff(apiElement(t, f.base, "/builds/1", "builds"), msg); d != "" {
		t.Errorf("message is not the API's build (-api +event):\n%s", d)
	}
}

// The events of a builder's builds come on buildbot's builders/N/builds
// path too, and steps and logs on theirs.
func TestSSENestedPaths(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	bs := listen(t, fmt.Sprintf("%s/sse/listen/builders/%d/builds/*/*", f.base, f.builder.ID), "")
	bs.handshake()
	ls := listen(t, f.base+"/sse/logs/*/append", "") // no command means listen
	ls.handshake()
	b, _ := f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	st, _ := f.db.AddStep(b.ID, "s")
	l, _ := f.db.AddLog(st.ID, "stdio", "s")
	if _, err := f.db.AppendLog(l.ID, "ohello\n"); err != nil {
		t.Fatal(err)
	}
	if _, key, msg := bs.event(); key != "builders/1/builds/1/new" || msg["number"] != 1.0 {
		t.Errorf("builder's build event %s %v", key, msg)
	}
	_, key, msg := ls.event()
	if key != "logs/1/append" || msg["num_lines"] != 1.0 {
		t.Errorf("log event %s %v", key, msg)
	}
	if d := cmp.Diff(apiElement(t, f.base, "/logs/1", "logs"), msg); d != "" {
		t.Errorf("message is not the API's log (-api +event):\n%s", d)
	}
}

// A client that reconnects with Last-Event-ID gets exactly the events it
// missed, none twice, then live ones.
func TestSSEResume(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	url := f.base + "/sse/listen/builds/*/*"
	s := listen(t, url, "")
	s.handshake()
	b1, _ := f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	lastID, key, _ := s.event()
	if key != "builds/1/new" {
		t.Fatalf("got %s", key)
	}
	s.close()

	// Missed while away.
	f.db.SetBuildStateString(b1.ID, "building")
	b2, _ := f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	f.db.FinishBuild(b1.ID, store.Success, time.Time{})

	check := func(s *sseStream) {
		t.Helper()
		s.handshake()
		var keys []string
		for range 3 {
			_, key, _ := s.event()
			keys = append(keys, key)
		}
		want := []string{"builds/1/update", "builds/2/new", "builds/1/finished"}
		if d := cmp.Diff(want, keys); d != "" {
			t.Errorf("replayed (-want +got):\n%s", d)
		}
	}
	s2 := listen(t, url, lastID)
	check(s2)
	s3 := listen(t, url+"?last_event_id="+lastID, "")
	check(s3)
	// Then live, once.
	f.db.FinishBuild(b2.ID, store.Failure, time.Time{})
	for _, s := range []*sseStream{s2, s3} {
		if _, key, msg := s.event(); key != "builds/2/finished" || msg["results"] != 2.0 {
			t.Errorf("live event %s %v", key, msg)
		}
	}

	// Reconnecting before any event resumes from the handshake's id.
	s4 := listen(t, url, "")
	hs := s4.next()
	s4.close()
	f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	s5 := listen(t, url, hs.ID)
	s5.handshake()
	if _, key, _ := s5.event(); key != "builds/3/new" {
		t.Errorf("after handshake id: %s", key)
	}
}

// A client whose Last-Event-ID is no longer kept is told to reset.
func TestSSEReset(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{Size: 4})
	for range 3 {
		f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID}) // 3 events each
	}
	s := listen(t, f.base+"/sse/listen/builds/*/*", "1")
	s.handshake()
	if ev := s.next(); ev.Event != "reset" {
		t.Errorf("got %+v, want a reset", ev)
	}
	f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	if _, key, _ := s.event(); key != "builds/4/new" {
		t.Errorf("after reset: %s", key)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestSSEAddRemove(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	s := listen(t, f.base+"/sse/listen", "")
	id := s.handshake()
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/sse/add/" + id + "/steps/*/*", 200, "ok"},
		{"/sse/add/" + id + "/builds/*/finished", 200, "ok"},
		{"/sse/remove/" + id + "/steps/*/*", 200, "ok"},
		{"/sse/remove/" + id + "/steps/*/*", 404, "consumer is not listening to this event"},
		{"/sse/add/no-such-uuid/builds/*/*", 400, "unknown uuid"},
		{"/sse/add", 400, "need uuid"},
		{"/sse/add/" + id + "/builds//x", 400, `invalid path "builds//x"`},
	} {
		if status, body := get(t, f.base+tc.path); status != tc.status || body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, status, body, tc.status, tc.body)
		}
	}
	b, _ := f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	f.db.AddStep(b.ID, "s")
	f.db.FinishBuild(b.ID, store.Success, time.Time{})
	if _, key, _ := s.event(); key != "builds/1/finished" {
		t.Errorf("got %s, want builds/1/finished only", key)
	}
	// The listener is forgotten once gone.
	s.close()
	waitUntil(t, "listener removed", func() bool {
		status, _ := get(t, f.base+"/sse/add/"+id+"/builds/*/*")
		return status == 400
	})
}

// waitUntil polls cond for a few seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Behind a proxy that strips a prefix, /sse/ and /ws work unchanged.
func TestLiveUnderPrefix(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	ts := httptest.NewServer(http.StripPrefix("/buildbot", f.srv.Handler()))
	defer ts.Close()
	s := listen(t, ts.URL+"/buildbot/sse/listen/builds/*/*", "")
	id := s.handshake()
	if status, _ := get(t, ts.URL+"/buildbot/sse/add/"+id+"/changes/*/*"); status != 200 {
		t.Errorf("add under prefix: %d", status)
	}
	ws := dialWS(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/buildbot/ws")
	ws.call(map[string]any{"cmd": "startConsuming", "path": "builds/*/*", "_id": 1})
	f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	if _, key, _ := s.event(); key != "builds/1/new" {
		t.Errorf("sse under prefix: %s", key)
	}
	if ev := ws.event(); ev.K != "builds/1/new" {
		t.Errorf("ws under prefix: %s", ev.K)
	}
	ws.conn.Close()
	s.close()
}

// Many clients at once each see every event, in order; ending Serve ends
// every stream.
func TestLiveManyClientsAndShutdown(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	const clients, builds = 20, 10
	var sses []*sseStream
	var wss []*wsClient
	for i := range clients {
		s := listen(t, f.base+"/sse/listen/builds/*/new", "")
		s.handshake()
		sses = append(sses, s)
		ws := dialWS(t, "ws"+strings.TrimPrefix(f.base, "http")+"/ws")
		ws.call(map[string]any{"cmd": "startConsuming", "path": "builds/*/new", "_id": i})
		wss = append(wss, ws)
	}
	for range builds {
		f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for n := 1; n <= builds; n++ {
				want := fmt.Sprintf("builds/%d/new", n)
				if _, key, _ := sses[i].event(); key != want {
					t.Errorf("sse client %d: %s, want %s", i, key, want)
				}
				if ev := wss[i].event(); ev.K != want {
					t.Errorf("ws client %d: %s, want %s", i, ev.K, want)
				}
			}
		})
	}
	wg.Wait()

	f.stop() // fails the test if Serve does not return
	for i, s := range sses {
		if _, err := io.Copy(io.Discard, s.r); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("sse client %d: %v", i, err)
		}
	}
	for i, ws := range wss {
		ws.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ws.conn.ReadMessage(); err == nil {
			t.Errorf("ws client %d still open", i)
		}
	}
}
