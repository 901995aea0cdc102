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
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/sse/listen/logs/*/append"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sseEvents := make(chan liveEvent, 1000)
	uuid := make(chan string, 1)
	go func() {
		defer close(sseEvents)
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
				sseEvents <- liveEvent{d.Key, d.Message}
			}
		}
	}()
	var id string
	select {
	case id = <-uuid:
	case <-ctx.Done():
		t.Fatal("no SSE handshake")
	}
	if s := e.getText("/sse/add/" + id + "/builds/*/finished"); s != "ok" {
		t.Fatalf("sse add: %q", s)
	}

	// WebSocket: consume the same.
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", e.WebPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, path := range []string{"logs/*/append", "builds/*/finished"} {
		conn.WriteJSON(map[string]any{"cmd": "startConsuming", "path": path, "_id": i})
		var ack map[string]any
		if err := conn.ReadJSON(&ack); err != nil || ack["code"] != 200.0 {
			t.Fatalf("startConsuming %s: %v %v", path, ack, err)
		}
	}
	wsEvents := make(chan liveEvent, 1000)
	go func() {
		defer close(wsEvents)
		for {
			var m struct {
				K string         `json:"k"`
				M map[string]any `json:"m"`
			}
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			wsEvents <- liveEvent{m.K, m.M}
		}
	}()

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
