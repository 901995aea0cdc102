package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const eventsConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["talker"]

[[builders]]
name = "talker"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "talk"
  command = "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"
`

// liveEvent is an event as both /sse/ and /ws carry it.
type liveEvent struct {
	Key string
	Msg map[string]any
}

// A real build's log is followed live over SSE and over the WebSocket,
// until the build finishes.
func TestLiveEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(eventsConfig)
	e.startMaster()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// SSE: listen to log appends, then add the builds' finish.
	sseEvents, id := listenSSE(ctx, t, e.url("/sse/listen/logs/*/append"))
	if s := e.getText("/sse/add/" + id + "/builds/*/finished"); s != "ok" {
		t.Fatalf("sse add: %q", s)
	}
	// WebSocket: consume the same.
	wsEvents := consumeWS(ctx, t, fmt.Sprintf("ws://127.0.0.1:%d/ws", e.WebPort), "logs/*/append", "builds/*/finished")

	e.startWorker("w1", "secret")
	brid := e.force("force", 1, "live")

	// follow reads events until builds/N/finished and returns the number of
	// lines of the last append and how many appends came.
	follow := func(name string, ch <-chan liveEvent) (lines float64, appends int, build map[string]any) {
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("%s: stream ended", name)
				}
				switch {
				case strings.HasPrefix(ev.Key, "logs/") && strings.HasSuffix(ev.Key, "/append"):
					n, _ := ev.Msg["num_lines"].(float64)
					if n < lines {
						t.Errorf("%s: num_lines went from %v to %v", name, lines, n)
					}
					lines = n
					appends++
				case strings.HasPrefix(ev.Key, "builds/") && strings.HasSuffix(ev.Key, "/finished"):
					return lines, appends, ev.Msg
				default:
					t.Errorf("%s: unexpected event %s", name, ev.Key)
				}
			case <-ctx.Done():
				t.Fatalf("%s: no builds/N/finished", name)
			}
		}
	}
	b := e.waitBuild(brid, time.Minute)
	var stdio string
	for _, st := range e.steps(b.BuildID) {
		if st.Name == "talk" {
			stdio = e.stdio(st.StepID)
		}
	}
	for name, ch := range map[string]<-chan liveEvent{"sse": sseEvents, "ws": wsEvents} {
		lines, appends, build := follow(name, ch)
		if appends == 0 || int(lines) != strings.Count(stdio, "\n") {
			t.Errorf("%s: %d appends, last with %v lines; the log has %d", name, appends, lines, strings.Count(stdio, "\n"))
		}
		if build["buildid"] != float64(b.BuildID) || build["complete"] != true || build["results"] != 0.0 {
			t.Errorf("%s: finished build %v", name, build)
		}
	}
	if !strings.Contains(stdio, "oline5\n") {
		t.Errorf("log %q", stdio)
	}
}

// listenSSE opens an SSE stream at url and returns its events and the
// listener's uuid (from the handshake). The stream ends with ctx.
func listenSSE(ctx context.Context, t *testing.T, url string) (<-chan liveEvent, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan liveEvent, 1000)
	uuid := make(chan string, 1)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "handshake":
				uuid <- strings.TrimPrefix(line, "data: ")
			case strings.HasPrefix(line, "data: ") && event == "event":
				var d struct {
					Key     string         `json:"key"`
					Message map[string]any `json:"message"`
				}
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
					t.Errorf("sse data %q: %v", line, err)
					return
				}
				events <- liveEvent{d.Key, d.Message}
			}
		}
	}()
	select {
	case id := <-uuid:
		return events, id
	case <-ctx.Done():
		t.Fatal("no SSE handshake")
		return nil, ""
	}
}

// consumeWS opens buildbot's WebSocket at url, starts consuming paths, and
// returns the events pushed. The connection closes at the test's end.
func consumeWS(ctx context.Context, t *testing.T, url string, paths ...string) <-chan liveEvent {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	for i, path := range paths {
		conn.WriteJSON(map[string]any{"cmd": "startConsuming", "path": path, "_id": i})
		var ack map[string]any
		if err := conn.ReadJSON(&ack); err != nil || ack["code"] != 200.0 {
			t.Fatalf("startConsuming %s: %v %v", path, ack, err)
		}
	}
	events := make(chan liveEvent, 1000)
	go func() {
		defer close(events)
		for {
			var m struct {
				K string         `json:"k"`
				M map[string]any `json:"m"`
			}
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			events <- liveEvent{m.K, m.M}
		}
	}()
	return events
}

// waitEvent reads events until one has key, and returns its message.
func waitEvent(ctx context.Context, t *testing.T, name string, ch <-chan liveEvent, key string) map[string]any {
	t.Helper()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("%s: stream ended before %s", name, key)
			}
			if ev.Key == key {
				return ev.Msg
			}
		case <-ctx.Done():
			t.Fatalf("%s: no %s", name, key)
		}
	}
}
