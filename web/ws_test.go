package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/live"
)

// wsClient is a test's WebSocket client, speaking buildbot's protocol.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialWS(t *testing.T, url string) *wsClient {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

// read reads the next frame as a map.
func (c *wsClient) read() map[string]any {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m map[string]any
	if err := c.conn.ReadJSON(&m); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// call sends a frame and returns the next frame, which must be its answer.
func (c *wsClient) call(frame any) map[string]any {
	c.t.Helper()
	if s, ok := frame.(string); ok {
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			c.t.Fatal(err)
		}
	} else if err := c.conn.WriteJSON(frame); err != nil {
		c.t.Fatal(err)
	}
	m := c.read()
	if _, ok := m["code"]; !ok {
		c.t.Fatalf("got %v, want an answer", m)
	}
	return m
}

// event reads the next frame, which must be an event.
func (c *wsClient) event() live.WSEvent {
	c.t.Helper()
	m := c.read()
	k, ok := m["k"].(string)
	if !ok {
		c.t.Fatalf("got %v, want an event", m)
	}
	return live.WSEvent{K: k, M: m["m"]}
}

func TestWS(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	c := dialWS(t, "ws"+strings.TrimPrefix(f.base, "http")+"/ws")
	for _, tc := range []struct {
		frame any
		want  map[string]any
	}{
		{map[string]any{"cmd": "ping", "_id": 1}, map[string]any{"_id": 1.0, "code": 200.0, "msg": "pong"}},
		{map[string]any{"cmd": "startConsuming", "path": "builds/*/*", "_id": 2}, map[string]any{"_id": 2.0, "code": 200.0, "msg": "OK"}},
		{map[string]any{"cmd": "startConsuming", "path": "builds/*/*", "_id": 3}, map[string]any{"_id": 3.0, "code": 200.0, "msg": "OK"}},
		{map[string]any{"cmd": "startConsuming", "path": "steps/*/*", "_id": "s"}, map[string]any{"_id": "s", "code": 200.0, "msg": "OK"}},
		{map[string]any{"cmd": "stopConsuming", "path": "steps/*/*", "_id": 4}, map[string]any{"_id": 4.0, "code": 200.0, "msg": "OK"}},
		{map[string]any{"cmd": "stopConsuming", "path": "steps/*/*", "_id": 5}, map[string]any{"_id": 5.0, "code": 400.0, "error": "path was not consumed 'steps/*/*'"}},
		{map[string]any{"cmd": "startConsuming", "path": 7, "_id": 6}, map[string]any{"_id": 6.0, "code": 400.0, "error": "invalid path format '7'"}},
		{map[string]any{"cmd": "frobnicate", "_id": 7}, map[string]any{"_id": 7.0, "code": 404.0, "error": "no such command type 'frobnicate'"}},
		{map[string]any{"cmd": "ping"}, map[string]any{"_id": nil, "code": 400.0, "error": "no '_id' in websocket frame"}},
		{map[string]any{"_id": 8}, map[string]any{"_id": 8.0, "code": 400.0, "error": "no 'cmd' in websocket frame"}},
	} {
		if d := cmp.Diff(tc.want, c.call(tc.frame)); d != "" {
			t.Errorf("%v (-want +got):\n%s", tc.frame, d)
		}
	}
	if m := c.call("not json"); m["code"] != 400.0 {
		t.Errorf("bad frame: %v", m)
	}

	b, _ := f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	f.db.AddStep(b.ID, "s") // steps were stopped
	f.db.FinishBuild(b.ID, store.Success, time.Time{})
	if ev := c.event(); ev.K != "builds/1/new" {
		t.Errorf("first event %s", ev.K)
	}
	ev := c.event()
	if ev.K != "builds/1/finished" {
		t.Errorf("second event %s", ev.K)
	}
	if d := cmp.Diff(apiElement(t, f.base, "/builds/1", "builds"), ev.M); d != "" {
		t.Errorf("message is not the API's build (-api +event):\n%s", d)
	}

	// After stopConsuming nothing more comes: the next frame is the ping's answer.
	c.call(map[string]any{"cmd": "stopConsuming", "path": "builds/*/*", "_id": 9})
	f.db.AddBuild(store.NewBuild{BuilderID: f.builder.ID})
	if m := c.call(map[string]any{"cmd": "ping", "_id": 10}); m["_id"] != 10.0 {
		t.Errorf("got %v after stopConsuming", m)
	}
}

// A page from another site may not open the WebSocket.
func TestWSOrigin(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	url := "ws" + strings.TrimPrefix(f.base, "http") + "/ws"
	_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"http://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: %v %v", err, resp)
	}
	conn, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {f.base}})
	if err != nil {
		t.Fatalf("own origin: %v", err)
	}
	conn.Close()
}

// Without a bus the live routes are absent.
func TestLiveDisabled(t *testing.T) {
	t.Parallel()
	srv := New(Config{})
	for _, path := range []string{"/sse/listen/builds/*/*", "/ws"} {
		rec := httptestRecorder(srv, path)
		if rec != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, rec)
		}
	}
}

func httptestRecorder(srv *Server, path string) int {
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// Buildbot's scheduler switch is followed live: a subscriber to
// schedulers/*/* gets schedulers/N/updated with the scheduler's record,
// enabled false then true, as buildbot publishes it.
func TestWSSchedulerEnable(t *testing.T) {
	t.Parallel()
	var scheds *scheduler.Set
	f := newLiveServerWith(t, events.Config{}, func(c *Config, db *store.DB) {
		scheds = scheduler.New([]config.Scheduler{{Type: "force", Name: "force", BuilderNames: []string{"runtests"}}}, db, nil, nil)
		c.Forcer = scheds
		c.Schedulers = func() []SchedulerInfo {
			return []SchedulerInfo{{ID: 7, Name: "force", Enabled: scheds.Enabled("force")}}
		}
		c.EnableScheduler = scheds.SetEnabled
	})
	c := dialWS(t, "ws"+strings.TrimPrefix(f.base, "http")+"/ws")
	if m := c.call(map[string]any{"cmd": "startConsuming", "path": "schedulers/*/*", "_id": 1}); m["code"] != 200.0 {
		t.Fatalf("startConsuming: %v", m)
	}
	for _, enabled := range []bool{false, true} {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"enable","id":1,"params":{"enabled":%v}}`, enabled)
		resp, err := http.Post(f.base+"/api/v2/schedulers/7", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("enable %v: %s", enabled, resp.Status)
		}
		ev := c.event()
		want := map[string]any{"schedulerid": 7.0, "name": "force", "enabled": enabled, "master": nil}
		if ev.K != "schedulers/7/updated" || !cmp.Equal(want, ev.M) {
			t.Errorf("after enable %v: event %s %v, want schedulers/7/updated %v", enabled, ev.K, ev.M, want)
		}
		if d := cmp.Diff(apiElement(t, f.base, "/schedulers/7", "schedulers"), ev.M); d != "" {
			t.Errorf("message is not the API's scheduler (-api +event):\n%s", d)
		}
	}
}
