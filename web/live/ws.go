package live

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/web/auth"
)

// /ws speaks buildbot's WebSocket protocol (www/ws.py). The client sends
// JSON frames, each with an "_id" the answer repeats:
//
//	{"cmd": "startConsuming", "path": "builds/*/*", "_id": 1}  → {"_id": 1, "code": 200, "msg": "OK"}
//	{"cmd": "stopConsuming", "path": "builds/*/*", "_id": 2}   → {"_id": 2, "code": 200, "msg": "OK"}
//	{"cmd": "ping", "_id": 3}                                  → {"_id": 3, "code": 200, "msg": "pong"}
//
// and errors as {"_id": 4, "code": 400, "error": "..."} (404 for an unknown
// command). The events of the consumed paths arrive as
// {"k": "builds/12/finished", "m": {...}}, m as the REST API shows the
// record. A client that falls too far behind is disconnected.

const (
	// wsPingPeriod is how often the server pings; a peer silent for
	// wsPongWait is gone.
	wsPingPeriod = 30 * time.Second
	wsPongWait   = 75 * time.Second
	// WSMaxFrame bounds a client's frame; a larger one closes the socket.
	WSMaxFrame = 64 << 10
)

// WS serves /ws: buildbot's WebSocket protocol (above), once cfg.AllowWS
// lets the request's origin in.
func (s *Server) WS(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		jsonreply.Error(w, http.StatusNotFound, "live events are not enabled")
		return
	}
	ctx, done, ok := s.live.start(r.Context())
	if !ok {
		jsonreply.Error(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer done()
	if !s.cfg.AllowWS(r) {
		jsonreply.Error(w, http.StatusForbidden, "websocket refused: origin "+r.Header.Get("Origin")+" is not this site's (set buildbot_url to the URL the browser uses, or send the page's csrf-token as ?"+auth.CSRFField+"=)")
		return
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }} // checked above
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	defer conn.Close()
	conn.SetReadLimit(WSMaxFrame)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bus := s.cfg.Events
	sub, err := bus.Subscribe(ctx, nil, bus.Last())
	if err != nil {
		s.log.Error("websocket subscribe", "err", err)
		return
	}
	defer sub.Close()

	replies := make(chan map[string]any, 16)
	var wg sync.WaitGroup
	defer func() {
		// Unblock the reader, then wait for it.
		cancel()
		conn.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		defer cancel()
		conn.SetReadDeadline(time.Now().Add(wsPongWait))
		conn.SetPongHandler(func(string) error {
			return conn.SetReadDeadline(time.Now().Add(wsPongWait))
		})
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			conn.SetReadDeadline(time.Now().Add(wsPongWait))
			select {
			case replies <- wsCommand(sub, data):
			case <-ctx.Done():
				return
			}
		}
	})

	ping := time.NewTicker(wsPingPeriod)
	defer ping.Stop()
	write := func(v any) bool {
		conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		return conn.WriteJSON(v) == nil
	}
	for {
		select {
		case <-ctx.Done():
			conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseGoingAway, "server closing"),
				time.Now().Add(time.Second))
			return
		case rep := <-replies:
			if !write(rep) {
				return
			}
		case ev, ok := <-sub.C:
			if !ok {
				conn.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "fell behind"),
					time.Now().Add(time.Second))
				return
			}
			if !write(WSEvent{K: ev.Key, M: s.cfg.Encode(ev.Record)}) {
				return
			}
		case <-ping.C:
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(streamWriteTimeout)) != nil {
				return
			}
		}
	}
}

// WSEvent is one event as /ws sends it.
type WSEvent struct {
	K string `json:"k"`
	M any    `json:"m"`
}

// wsCommand runs one client frame against sub and returns the answer.
func wsCommand(sub *events.Subscription, data []byte) map[string]any {
	var frame map[string]json.RawMessage
	if err := json.Unmarshal(data, &frame); err != nil {
		return wsError(nil, http.StatusBadRequest, "invalid websocket frame: "+err.Error())
	}
	rawID, ok := frame["_id"]
	if !ok {
		return wsError(nil, http.StatusBadRequest, "no '_id' in websocket frame")
	}
	id := rawID
	var cmd string
	if raw, ok := frame["cmd"]; !ok || json.Unmarshal(raw, &cmd) != nil {
		return wsError(id, http.StatusBadRequest, "no 'cmd' in websocket frame")
	}
	path := func() (string, map[string]any) {
		var p string
		raw, ok := frame["path"]
		if !ok {
			return "", wsError(id, http.StatusBadRequest, "missing 'path'")
		}
		if json.Unmarshal(raw, &p) != nil || !validPath(p) {
			return "", wsError(id, http.StatusBadRequest, fmt.Sprintf("invalid path format '%s'", raw))
		}
		return p, nil
	}
	switch cmd {
	case "ping":
		return map[string]any{"_id": id, "code": http.StatusOK, "msg": "pong"}
	case "startConsuming":
		p, errMsg := path()
		if errMsg != nil {
			return errMsg
		}
		sub.Add(p)
	case "stopConsuming":
		p, errMsg := path()
		if errMsg != nil {
			return errMsg
		}
		if !sub.Remove(p) {
			return wsError(id, http.StatusBadRequest, fmt.Sprintf("path was not consumed '%s'", p))
		}
	default:
		return wsError(id, http.StatusNotFound, fmt.Sprintf("no such command type '%s'", cmd))
	}
	return map[string]any{"_id": id, "code": http.StatusOK, "msg": "OK"}
}

// wsError is an error answer; a nil id is sent as null.
func wsError(id json.RawMessage, code int, msg string) map[string]any {
	if id == nil {
		return map[string]any{"_id": nil, "code": code, "error": msg}
	}
	return map[string]any{"_id": id, "code": code, "error": msg}
}
