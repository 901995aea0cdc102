package live

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/events"
)

// Live events. /sse/ and /ws serve the events of Config.Events, as
// buildbot's www/sse.py and www/ws.py do, each event's record shown as the
// REST API shows it (the element of /api/v2/builds/12 for a build).
//
// GET /sse/listen/<path> streams the events whose keys match path ("*" is
// one element: builds/*/*), as text/event-stream:
//
//	retry: 3000
//	id: 1042
//	event: handshake
//	data: 6f1c…-uuid
//
//	id: 1043
//	event: event
//	data: {"key":"builds/12/finished","message":{"buildid":12,…}}
//
// A comment line keeps a quiet stream open every 15 s. A client that
// reconnects with Last-Event-ID (or ?last_event_id=) first gets every
// matching event it missed; if they are no longer all kept, it gets
// "event: reset" instead and should reload. GET /sse/add/<uuid>/<path> and
// /sse/remove/<uuid>/<path> change the paths of the listener whose uuid
// the handshake gave (400 for an unknown uuid, 404 to remove a path it does
// not listen to); a reconnected listener has a new uuid and only its listen
// path.

const (
	// sseKeepalive is how often a quiet stream gets a comment line, so
	// that proxies and browsers keep it open.
	sseKeepalive = 15 * time.Second
	// sseRetry is the reconnection delay, in ms, the stream asks for.
	sseRetry = 3000
	// streamWriteTimeout bounds one write to a live client.
	streamWriteTimeout = 10 * time.Second
)

// liveStreams tracks the live event streams of a Server, so that
// CloseAndWait can end them and wait for them.
type liveStreams struct {
	mu        sync.Mutex
	listeners map[string]*events.Subscription // guarded by mu; SSE listeners by uuid
	closed    bool                            // guarded by mu; no stream may start
	stopCtx   context.Context                 // guarded by mu; done when closed
	stop      context.CancelFunc              // guarded by mu
	wg        sync.WaitGroup                  // streams running (hijacked ones included)
}

// start counts a new stream and returns its context, done when parent is
// or when Serve ends; the stream calls done when it has ended. It reports
// false once Serve is shutting down.
func (l *liveStreams) start(parent context.Context) (ctx context.Context, done func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, false
	}
	if l.stop == nil {
		l.stopCtx, l.stop = context.WithCancel(context.Background())
	}
	ctx, cancel := context.WithCancel(parent)
	unhook := context.AfterFunc(l.stopCtx, cancel)
	l.wg.Add(1)
	return ctx, func() {
		unhook()
		cancel()
		l.wg.Done()
	}, true
}

// closeAndWait ends every stream, refuses new ones, and waits for the
// running ones to return.
func (l *liveStreams) closeAndWait() {
	l.mu.Lock()
	l.closed = true
	if l.stop != nil {
		l.stop()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *liveStreams) add(id string, sub *events.Subscription) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.listeners == nil {
		l.listeners = map[string]*events.Subscription{}
	}
	l.listeners[id] = sub
}

func (l *liveStreams) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.listeners, id)
}

func (l *liveStreams) listener(id string) *events.Subscription {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listeners[id]
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// SSE serves /sse/REST: listen, add and remove, as buildbot's
// EventResource.
func (s *Server) SSE(w http.ResponseWriter, r *http.Request, rest string) {
	if s.cfg.Events == nil {
		jsonreply.Error(w, http.StatusNotFound, "live events are not enabled")
		return
	}
	var parts []string
	if rest := strings.Trim(rest, "/"); rest != "" {
		parts = strings.Split(rest, "/")
	}
	cmd := "listen"
	if len(parts) > 0 && (parts[0] == "listen" || parts[0] == "add" || parts[0] == "remove") {
		cmd, parts = parts[0], parts[1:]
	}
	if cmd == "listen" {
		s.sseListen(w, r, strings.Join(parts, "/"))
		return
	}
	if len(parts) == 0 {
		sseReply(w, http.StatusBadRequest, "need uuid")
		return
	}
	sub := s.live.listener(parts[0])
	if sub == nil {
		sseReply(w, http.StatusBadRequest, "unknown uuid")
		return
	}
	path := strings.Join(parts[1:], "/")
	if !validPath(path) {
		sseReply(w, http.StatusBadRequest, "invalid path "+strconv.Quote(path))
		return
	}
	if cmd == "add" {
		sub.Add(path)
	} else if !sub.Remove(path) {
		sseReply(w, http.StatusNotFound, "consumer is not listening to this event")
		return
	}
	sseReply(w, http.StatusOK, "ok")
}

func sseReply(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg))
}

// validPath reports whether path is a routing key pattern: elements joined
// with "/", none empty.
func validPath(path string) bool {
	return path != "" && !strings.Contains("/"+path+"/", "//")
}

// lastEventID returns the event id a reconnecting client last saw, from the
// Last-Event-ID header or the last_event_id parameter.
func lastEventID(r *http.Request) (uint64, bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	return id, err == nil
}

func (s *Server) sseListen(w http.ResponseWriter, r *http.Request, path string) {
	var patterns []string
	if path != "" {
		if !validPath(path) {
			sseReply(w, http.StatusBadRequest, "invalid path "+strconv.Quote(path))
			return
		}
		patterns = []string{path}
	}
	ctx, done, ok := s.live.start(r.Context())
	if !ok {
		sseReply(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	defer done()
	bus := s.cfg.Events
	after, resume := lastEventID(r)
	var sub *events.Subscription
	var err error
	reset := false
	if resume {
		sub, err = bus.Subscribe(ctx, patterns, after)
		reset = errors.Is(err, events.ErrGone)
	}
	if sub == nil {
		after = bus.Last()
		sub, err = bus.Subscribe(ctx, patterns, after)
	}
	if err != nil {
		sseReply(w, http.StatusServiceUnavailable, "cannot subscribe: "+err.Error())
		return
	}
	defer sub.Close()
	id := newUUID()
	s.live.add(id, sub)
	defer s.live.remove(id)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\nid: %d\nevent: handshake\ndata: %s\n\n", sseRetry, after, id)
	if reset {
		fmt.Fprintf(&buf, "event: reset\ndata: %d\n\n", after)
	}
	flush := func() bool {
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	if !flush() {
		return
	}
	keepalive := time.NewTicker(sseKeepalive)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive.C:
			buf.WriteString(": keepalive\n\n")
		case ev, ok := <-sub.C:
			if !ok {
				// Dropped for falling behind, or done: the client
				// reconnects and resumes from its Last-Event-ID.
				return
			}
			s.writeSSEEvent(&buf, ev)
			// Send what else is ready in the same write.
			for more := true; more && buf.Len() < 64<<10; {
				select {
				case ev, ok := <-sub.C:
					if !ok {
						more = false
						break
					}
					s.writeSSEEvent(&buf, ev)
				default:
					more = false
				}
			}
		}
		if !flush() {
			return
		}
	}
}

// writeSSEEvent appends ev to buf as an SSE event.
func (s *Server) writeSSEEvent(buf *bytes.Buffer, ev events.Event) {
	data, err := json.Marshal(map[string]any{"key": ev.Key, "message": s.cfg.Encode(ev.Record)})
	if err != nil {
		s.log.Error("encode event", "key", ev.Key, "err", err)
		return
	}
	fmt.Fprintf(buf, "id: %d\nevent: event\ndata: %s\n\n", ev.ID, data)
}
