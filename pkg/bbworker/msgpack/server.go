package msgpack

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gbb-ci/gbb/internal/backoff"
	"github.com/gbb-ci/gbb/internal/connlimit"
	"github.com/gbb-ci/gbb/internal/logsample"
	"github.com/gbb-ci/gbb/pkg/bbworker"
)

const (
	// headerTimeout bounds the time a client has to send its upgrade
	// request: a connection that has not logged in by then is closed.
	headerTimeout = 10 * time.Second
	// maxHeaderBytes bounds the upgrade request's headers.
	maxHeaderBytes = 16 << 10
	// pingTimeout is how long the old connection of a worker that logs
	// in again has to answer before the new one replaces it (buildbot's
	// WorkerManager.PING_TIMEOUT).
	pingTimeout = 10 * time.Second
	// loginBurst wrong passwords from an address are free, then one per
	// loginEvery, as on gbb's own worker port; past that the address is
	// refused (429) before its password is checked.
	loginBurst = 10
	loginEvery = 6 * time.Second
	// brakeAddrs bounds the addresses the brake tracks.
	brakeAddrs = 10_000
)

// Server accepts buildbot-workers speaking msgpack_experimental_v7.
type Server struct {
	// Password returns the password of the worker name; ok=false
	// refuses the name.
	Password func(name string) (password string, ok bool)
	// Attach is called with each logged-in worker, in its own goroutine.
	Attach func(bbworker.Conn)
	// Logger logs refusals (sampled per source address) and connections;
	// nil means discard.
	Logger *slog.Logger

	once   sync.Once
	log    *slog.Logger
	sample *logsample.Keyed
	brake  *backoff.Limiter

	mu     sync.Mutex
	srv    *http.Server     // guarded by mu
	conns  map[string]*Conn // guarded by mu; the attached connection of each worker name
	all    map[*Conn]bool   // guarded by mu; every open connection
	closed bool             // guarded by mu
	wg     sync.WaitGroup   // upgraded connections and their Attach calls
}

func (s *Server) init() {
	s.once.Do(func() {
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		s.sample = logsample.NewKeyed(10*time.Second, 5, 0)
		s.brake = backoff.New(backoff.Config{Burst: loginBurst, Every: loginEvery, MaxKeys: brakeAddrs, ShareOverflow: true})
		s.conns = make(map[string]*Conn)
		s.all = make(map[*Conn]bool)
	})
}

// Serve accepts connections on ln until Close; it returns nil after
// Close, else the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       headerTimeout,
		// net/http reads 4 KiB past MaxHeaderBytes: the headers, request
		// line included, stop at maxHeaderBytes.
		MaxHeaderBytes: maxHeaderBytes - 4096,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.srv = srv
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops Serve, drops every connection, and returns once their
// goroutines (and the Attach calls) have returned.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	srv := s.srv
	conns := make([]*Conn, 0, len(s.all))
	for c := range s.all {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Close()
	}
	for _, c := range conns {
		c.shut()
	}
	s.wg.Wait()
	return err
}

// refuse answers a refused upgrade and logs it, sampled per address.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, why string, args ...any) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	s.sample.Log(host, s.log, slog.LevelWarn, "buildbot-worker refused",
		append([]any{"addr", r.RemoteAddr, "why", why}, args...)...)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="buildbot-worker"`)
	}
	w.WriteHeader(code)
	fmt.Fprintln(w, why)
}

// credentials decodes "Basic base64(name:password)" as buildbot's
// decode_http_authorization_header does.
func credentials(value string) (name, password string, err error) {
	if !strings.HasPrefix(value, "Basic ") {
		return "", "", errors.New("the Authorization header is not Basic")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value[6:]))
	if err != nil {
		return "", "", errors.New("the Authorization header is not base64")
	}
	name, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("the Authorization header has no colon")
	}
	return name, password, nil
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	value := r.Header.Get("Authorization")
	if value == "" {
		s.refuse(w, r, http.StatusUnauthorized, "Unauthorized: no credentials")
		return
	}
	name, password, err := credentials(value)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, "Bad request: "+err.Error())
		return
	}
	attempt, wait, allowed := s.brake.Begin(backoff.AddrKey(r.RemoteAddr))
	if !allowed {
		secs := int(wait.Seconds()) + 1
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		s.refuse(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins from this address: retry in %ds", secs), "worker", name)
		return
	}
	want, ok := "", false
	if s.Password != nil {
		want, ok = s.Password(name)
	}
	// Compare even for an unknown name, so that timing does not tell
	// which names exist.
	match := subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1
	if !ok || !match {
		attempt.Failed()
		// The log says which (the peer is not told: it would learn
		// which names exist).
		reason := "wrong password"
		if !ok {
			reason = "unknown worker"
		}
		s.refuse(w, r, http.StatusUnauthorized, "Unauthorized", "worker", name, "known_name", ok, "reason", reason)
		return
	}
	attempt.Succeeded()
	if !websocket.IsWebSocketUpgrade(r) {
		s.refuse(w, r, http.StatusBadRequest, "Bad request: not a WebSocket upgrade", "worker", name)
		return
	}
	up := websocket.Upgrader{
		HandshakeTimeout: headerTimeout,
		// A worker is no browser: its Origin, when it sends one, is
		// autobahn's default; the basic auth is what admits it.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			s.refuse(w, r, status, "Bad request: "+reason.Error(), "worker", name)
		},
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(maxMessage)
	ws.NetConn().SetDeadline(time.Time{}) // the server's ReadTimeout bounded the upgrade only
	// Logged in: no longer one of the connections the port's
	// max_connections caps (nor one it may close to make room).
	connlimit.Authenticated(ws.NetConn())
	log := s.log.With("worker", name, "protocol", "msgpack", "addr", r.RemoteAddr)
	c := newConn(name, r.RemoteAddr, ws, log)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close()
		return
	}
	s.all[c] = true
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	c.start()
	defer func() {
		<-c.Done()
		c.wait()
		s.mu.Lock()
		delete(s.all, c)
		if s.conns[name] == c {
			delete(s.conns, name)
		}
		s.mu.Unlock()
	}()

	if !s.arbitrate(r.Context(), c) {
		c.Close()
		return
	}
	log.Info("buildbot-worker connected")
	if s.Attach != nil {
		s.Attach(c)
	}
}

// arbitrate decides between a worker's new connection and the one it
// already has, as buildbot's WorkerManager.newConnection does: when the
// old one answers a print within pingTimeout, the new one is refused;
// otherwise the old one is dropped. It records c as the worker's
// connection when c wins.
func (s *Server) arbitrate(ctx context.Context, c *Conn) bool {
	for {
		s.mu.Lock()
		old := s.conns[c.name]
		if old == nil {
			if s.closed {
				s.mu.Unlock()
				return false
			}
			s.conns[c.name] = c
			s.mu.Unlock()
			return true
		}
		s.mu.Unlock()
		c.log.Info("duplicate connection of a worker: pinging the old one")
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
		err := old.Print(pctx, "master got a duplicate connection")
		cancel()
		if err == nil {
			c.log.Warn("refusing the duplicate connection of a worker: its old one is alive", "old", old.Remote())
			return false
		}
		c.log.Info("old connection of the worker did not answer: replacing it", "old", old.Remote(), "err", err)
		old.shut()
		select {
		case <-old.Done():
		case <-c.Done():
			return false
		}
		s.mu.Lock()
		if s.conns[c.name] == old {
			delete(s.conns, c.name)
		}
		s.mu.Unlock()
	}
}
