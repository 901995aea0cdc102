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
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/live"
)

// TestBadFilterValues: every bad query value is a 400 whose error says
// what is wrong with it, never a 500 and never an empty reason.
func TestBadFilterValues(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	tests := []struct{ path, want string }{
		{"/api/v2/builds?complete=maybe", `"maybe"`},
		{"/api/v2/builds?limit=-1", "limit must be a non-negative integer"},
		{"/api/v2/builds?offset=-1", "offset must be a non-negative integer"},
		{"/api/v2/builds?order=nosuchfield", `unknown field "nosuchfield" in order`},
		{"/api/v2/builds?order=-nosuchfield", `unknown field "nosuchfield" in order`},
		{"/api/v2/builds?buildid__gt=x", `"x"`},
		{"/api/v2/builds?buildid__nope=1", "nope"},
		{"/api/v2/builds?results=abc", `"abc"`},
		{"/api/v2/builds?started_at__lt=yesterday", `"yesterday"`},
		{"/api/v2/builds?field=nope", `unknown field "nope" in field`},
		{"/api/v2/builders?builderid__gt=1.5", `"1.5"`},
		{"/api/v2/buildrequests?claimed=perhaps", `"perhaps"`},
		{"/api/v2/changes?limit=99999999999999999999999", "limit must be a non-negative integer"},
		{fmt.Sprintf("/api/v2/logs/%d/contents?limit=-1", f.stdio.ID), "limit"},
		{fmt.Sprintf("/api/v2/logs/%d/contents?offset=x", f.stdio.ID), "offset"},
	}
	for _, tt := range tests {
		status, body := f.get(t, tt.path)
		msg, _ := body["error"].(string)
		if status != http.StatusBadRequest || !strings.Contains(msg, tt.want) {
			t.Errorf("GET %s: %d %q, want 400 with a reason containing %q", tt.path, status, msg, tt.want)
		}
	}
}

// TestBadRPCBodies: on every JSON-RPC endpoint, an oversized body is a 413,
// malformed JSON a parse error and an unknown method a method-not-found
// error, each a JSON-RPC error object with a reason; nothing is stored.
func TestBadRPCBodies(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	c := &testController{}
	ctl := newControlServer(t, c)
	paths := []string{
		f.srv.URL + "/api/v2/forceschedulers/force-runtests",
		ctl.srv.URL + fmt.Sprintf("/api/v2/builds/%d", f.running.ID),
		ctl.srv.URL + fmt.Sprintf("/api/v2/builders/%d/builds/%d", f.runtests.ID, f.running.Number),
		ctl.srv.URL + fmt.Sprintf("/api/v2/buildrequests/%d", f.brid),
		ctl.srv.URL + "/api/v2/workers/bench-worker",
	}
	huge := `{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":"` + strings.Repeat("x", 4*api.MaxRPCBody) + `"}}`
	tests := []struct {
		name, body string
		status     int
		code       float64
		want       string
	}{
		{"oversized", huge, http.StatusRequestEntityTooLarge, api.RPCInvalidRequest, "larger than"},
		{"malformed", `{"jsonrpc":"2.0","method":`, http.StatusBadRequest, api.RPCParseError, ""},
		{"not utf-8", "{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\",\"id\":1,\"params\":{}}", http.StatusBadRequest, api.RPCMethodNotFound, ""},
		{"unknown method", `{"jsonrpc":"2.0","method":"explode","id":1,"params":{}}`, http.StatusBadRequest, api.RPCMethodNotFound, "explode"},
		{"empty", ``, http.StatusBadRequest, api.RPCParseError, ""},
	}
	before := len(must(f.db.Buildsets(nil))(t))
	for _, p := range paths {
		for _, tt := range tests {
			status, body := postURL(t, p, "application/json", tt.body)
			e, _ := body["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if status != tt.status || e == nil || e["code"] != tt.code || msg == "" || !strings.Contains(msg, tt.want) {
				t.Errorf("POST %s %s: %d %v, want %d code %v with a reason containing %q", p, tt.name, status, body, tt.status, tt.code, tt.want)
			}
		}
	}
	// An id that is no string, number or null (JSON-RPC 2.0) is an invalid
	// request, as in buildbot's rest.py, and is not echoed; the call,
	// otherwise good, does nothing.
	for _, p := range paths {
		method := "stop"
		if strings.Contains(p, "forceschedulers") {
			method = "force"
		}
		for _, id := range []string{`{"a":1}`, `[1]`, `[]`, `true`, `false`} {
			body := `{"jsonrpc":"2.0","method":"` + method + `","id":` + id + `,"params":{"reason":"r","builderid":` + strconv.FormatInt(f.runtests.ID, 10) + `}}`
			status, reply := postURL(t, p, "application/json", body)
			e, _ := reply["error"].(map[string]any)
			if status != http.StatusBadRequest || e == nil || e["code"] != float64(api.RPCInvalidRequest) || e["message"] != "'id' must be a string, number, or null" {
				t.Errorf("POST %s id %s: %d %v, want 400 code %d, 'id' must be a string, number, or null", p, id, status, reply, api.RPCInvalidRequest)
			}
			if got, ok := reply["id"]; !ok || got != nil {
				t.Errorf("POST %s id %s: answered id %v, want null", p, id, got)
			}
		}
	}
	if after := len(must(f.db.Buildsets(nil))(t)); after != before {
		t.Errorf("%d buildsets after bad requests, want %d", after, before)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.calls) > 0 {
		t.Errorf("bad requests reached the controller: %q", c.calls)
	}
}

// postURL posts body to url and decodes the JSON answer.
func postURL(t *testing.T, url, ctype, body string) (int, map[string]any) {
	t.Helper()
	resp := must(http.Post(url, ctype, strings.NewReader(body)))(t)
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: status %d, body not JSON: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// TestOversizedForms: the pages' control forms and the change hook refuse
// an oversized body with 413 and a reason.
func TestOversizedForms(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	big := "reason=" + strings.Repeat("x", 4*api.MaxRPCBody)
	bigHook := "comments=" + strings.Repeat("x", hooks.MaxBody) // the hooks take 25 MiB
	for _, p := range []string{
		"/force/force-runtests",
		fmt.Sprintf("/builders/%d/builds/%d/stop", f.runtests.ID, f.running.Number),
		"/change_hook/base",
	} {
		body := big
		if strings.HasPrefix(p, "/change_hook/") {
			body = bigHook
		}
		req := must(http.NewRequest("POST", f.srv.URL+p, strings.NewReader(body)))(t)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp := must(http.DefaultClient.Do(req))(t)
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(answer), "larger than") {
			t.Errorf("POST %s with %d bytes: %s %.200s, want 413 with a reason", p, len(body), resp.Status, answer)
		}
	}
}

// TestStalledBody: a client that sends part of a body and then nothing is
// answered once the body timeout passes; the server goes on serving.
func TestStalledBody(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	s := New(Config{
		Store:       f.db,
		Forcer:      &testForcer{db: f.db, scheds: []scheduler.ForceInfo{{Name: "force-runtests", BuilderNames: []string{"runtests"}}}},
		Changes:     hooks.StoreSink{DB: f.db},
		ChangeHooks: testHooks,
		BodyTimeout: 300 * time.Millisecond,
	})
	lis := must(net.Listen("tcp", "127.0.0.1:0"))(t)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for _, tt := range []struct{ path, ctype string }{
		{"/api/v2/forceschedulers/force-runtests", "application/json"},
		{"/change_hook/base", "application/json"},
		{"/force/force-runtests", "application/x-www-form-urlencoded"},
	} {
		p := tt.path
		c := must(net.Dial("tcp", lis.Addr().String()))(t)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":", p, lis.Addr(), tt.ctype)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("POST %s with a stalled body: no answer: %v", p, err)
			c.Close()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(string(body), "timeout") {
			t.Errorf("POST %s with a stalled body: %s %s, want a 4xx that says timeout", p, resp.Status, body)
		}
	}
	resp := must(http.Get("http://" + lis.Addr().String() + "/api/v2/builders"))(t)
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET after stalled bodies: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// TestWSBadFrames: a frame larger than live.WSMaxFrame closes the WebSocket
// with "message too big" (1009); a frame that is not JSON, or not UTF-8,
// is answered with an error and the socket stays open.
func TestWSBadFrames(t *testing.T) {
	t.Parallel()
	f := newLiveServer(t, events.Config{})
	url := "ws" + strings.TrimPrefix(f.base, "http") + "/ws"
	c := dialWS(t, url)
	for _, frame := range []string{"{\"cmd\":\"ping\",\"_id\":", "{\"cmd\":\"\xff\",\"_id\":1}", "[]", "null"} {
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		if m := c.read(); m["code"] != 400.0 && m["code"] != 404.0 || m["error"] == "" {
			t.Errorf("frame %q: %v, want an error answer", frame, m)
		}
	}
	if m := c.call(map[string]any{"cmd": "ping", "_id": 1}); m["msg"] != "pong" {
		t.Errorf("ping after bad frames: %v", m)
	}

	// The server stops reading at the frame's header and closes with
	// 1009; the unread rest of the frame may turn that into a reset on
	// the client's side. Either way the connection ends, and the server
	// goes on serving.
	big := dialWS(t, url)
	err := big.conn.WriteMessage(websocket.TextMessage, []byte(`{"cmd":"ping","_id":"`+strings.Repeat("x", 2*live.WSMaxFrame)+`"}`))
	if err == nil {
		big.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err = big.conn.ReadMessage()
	}
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseMessageTooBig:
		t.Errorf("oversized frame: %v, want a close with code 1009", err)
	case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("oversized frame: the connection stays open (%v)", err)
	}
	again := dialWS(t, url)
	if m := again.call(map[string]any{"cmd": "ping", "_id": 2}); m["msg"] != "pong" {
		t.Errorf("ping after an oversized frame: %v", m)
	}
}

// TestBadBodiesWithAuth: with [www.auth], the authorization check reads the
// body first; it refuses an oversized one with 413 too, and a stalled one
// with 400, not 413.
func TestBadBodiesWithAuth(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	big := strings.Repeat("x", 4*api.MaxRPCBody)
	tests := []struct{ path, ctype, body string }{
		{"/login", "application/x-www-form-urlencoded", "username=alice&password=" + big},
		{"/force/force-runtests", "application/x-www-form-urlencoded", "reason=" + big},
		{fmt.Sprintf("/api/v2/builds/%d", f.running.ID), "application/json", `{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":"` + big + `"}}`},
		{"/api/v2/forceschedulers/force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"reason":"` + big + `"}}`},
	}
	for _, tt := range tests {
		resp, body := f.do(t, "root", "POST", tt.path, tt.ctype, tt.body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than") {
			t.Errorf("POST %s with %d bytes: %s %.200s, want 413 with a reason", tt.path, len(tt.body), resp.Status, body)
		}
	}
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	if len(f.ctl.calls) > 0 {
		t.Errorf("oversized requests reached the controller: %q", f.ctl.calls)
	}
}
