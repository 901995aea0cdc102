package pb

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/internal/backoff"
	"github.com/gbb-ci/gbb/internal/connlimit"
	"github.com/gbb-ci/gbb/internal/logsample"
	"github.com/gbb-ci/gbb/pkg/bbworker"
)

const (
	// loginTimeout bounds the time from connect to a logged-in worker.
	loginTimeout = 30 * time.Second
	// maxLoginFailures is how many refused responses a connection may
	// have; the last closes it (a worker reconnects after each refusal:
	// only a password guesser makes more on one connection).
	maxLoginFailures = 3
	// pingTimeout is how long a logged-in worker has to answer the ping
	// a second login under its name causes (buildbot's PING_TIMEOUT).
	pingTimeout = 10 * time.Second
	// loginBurst wrong passwords from an address are free, then one per
	// loginEvery, as on gbb's own worker port and the msgpack port; past
	// that the address is refused before its response is checked.
	loginBurst = 10
	loginEvery = 6 * time.Second
	// brakeAddrs bounds the addresses the brake tracks.
	brakeAddrs = 10_000
	// maxNameLen bounds a login's worker name, as on gbb's own worker
	// port: a longer one is refused before anything keeps it.
	maxNameLen = 128
)

// Server accepts buildbot-workers' PB connections and logs them in.
type Server struct {
	// Password returns the password of worker name; ok=false refuses the login.
	Password func(name string) (password string, ok bool)
	// Attach is called with each logged-in worker, in its own goroutine;
	// the Conn is gone when Done closes. Serve waits for it to return.
	Attach func(bbworker.Conn)
	// Logger logs refused logins (sampled per source address); nil
	// means discard.
	Logger *slog.Logger

	loginTimeout time.Duration // zero means loginTimeout; tests shorten it

	once     sync.Once
	refusals *logsample.Keyed
	brake    *backoff.Limiter

	mu      sync.Mutex
	closed  bool                      // guarded by mu
	lns     map[net.Listener]struct{} // guarded by mu
	brokers map[*broker]struct{}      // guarded by mu
	byName  map[string]*conn          // guarded by mu; the logged-in workers
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("pb: server closed")

func (s *Server) init() {
	s.once.Do(func() {
		s.refusals = logsample.NewKeyed(10*time.Second, 3, 0)
		s.brake = backoff.New(backoff.Config{Burst: loginBurst, Every: loginEvery, MaxKeys: brakeAddrs, ShareOverflow: true})
		s.lns = make(map[net.Listener]struct{})
		s.brokers = make(map[*broker]struct{})
		s.byName = make(map[string]*conn)
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

// Serve accepts connections on ln until ln is closed or Close is called;
// it then drops the connections it accepted and returns after their
// goroutines (and Attach calls) have returned: nil when ln was closed,
// ErrServerClosed after Close. Other Accept errors are retried.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()

	var wg sync.WaitGroup
	mine := make(map[*broker]struct{})
	var minemu sync.Mutex
	err := func() error {
		var delay time.Duration
		for {
			nc, err := ln.Accept()
			if err != nil {
				s.mu.Lock()
				closed := s.closed
				s.mu.Unlock()
				if closed {
					return ErrServerClosed
				}
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				// Out of file descriptors, say: wait, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.Logger.Warn("pb: accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			delay = 0
			b := newBroker(nc, s.Logger.With("remote", nc.RemoteAddr().String()))
			minemu.Lock()
			mine[b] = struct{}{}
			minemu.Unlock()
			wg.Go(func() {
				s.serveConn(b, &wg)
				minemu.Lock()
				delete(mine, b)
				minemu.Unlock()
			})
		}
	}()
	s.mu.Lock()
	delete(s.lns, ln)
	s.mu.Unlock()
	ln.Close()
	minemu.Lock()
	for b := range mine {
		b.shut()
	}
	minemu.Unlock()
	wg.Wait()
	return err
}

// Close stops every Serve and drops every connection.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for b := range s.brokers {
		b.shut()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) serveConn(b *broker, wg *sync.WaitGroup) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		b.nc.Close()
		return
	}
	s.brokers[b] = struct{}{}
	s.mu.Unlock()

	timeout := s.loginTimeout
	if timeout == 0 {
		timeout = loginTimeout
	}
	b.nc.SetDeadline(time.Now().Add(timeout))
	root := &root{s: s, b: b, wg: wg}
	err := b.run(root)

	s.mu.Lock()
	delete(s.brokers, b)
	c := root.conn
	if c != nil && s.byName[c.name] == c {
		delete(s.byName, c.name)
	}
	s.mu.Unlock()
	if c != nil {
		c.lost()
		b.log.Info("pb: worker gone", "worker", c.name, "err", err)
	} else {
		s.dropped(b, err)
	}
}

// dropped logs, sampled per source address, a connection that ended
// before a login: the peer closing it at Info, anything else (malformed
// banana, a refused expression, no login in time) at Warn, with why.
func (s *Server) dropped(b *broker, err error) {
	if why := b.reason(); why != nil {
		err = why
	}
	src := b.nc.RemoteAddr().String()
	if host, _, herr := net.SplitHostPort(src); herr == nil {
		src = host
	}
	if s.isClosed() {
		return
	}
	if errors.Is(err, io.EOF) {
		s.refusals.Log(src, s.Logger, slog.LevelInfo, "pb: connection closed before login",
			"remote", b.nc.RemoteAddr().String(), "reason", "closed by the peer")
		return
	}
	s.refusals.Log(src, s.Logger, slog.LevelWarn, "pb: dropped a connection before login",
		"remote", b.nc.RemoteAddr().String(), "reason", fmt.Sprint(err))
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// refuse logs a refused login, sampled per source address.
func (s *Server) refuse(b *broker, name, why string) {
	src := b.nc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(src); err == nil {
		src = host
	}
	s.refusals.Log(src, s.Logger, slog.LevelWarn, "pb: refused login",
		"worker", name, "remote", b.nc.RemoteAddr().String(), "reason", why)
}

// root is the object a worker gets first (twisted's _PortalWrapper).
type root struct {
	s  *Server
	b  *broker
	wg *sync.WaitGroup

	// Set on the broker's dispatch goroutine.
	conn     *conn       // the login's
	failures int         // refused responses
	pending  *challenger // the challenge awaiting a response, if any
}

func (r *root) remote(method string, args []any, kw map[string]any) (any, error) {
	if method != "login" {
		return nil, noSuchMethod(method)
	}
	if len(args) != 1 {
		return nil, fmt.Errorf("login takes the username")
	}
	name, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("login: username is a %T", args[0])
	}
	if len(name) > maxNameLen {
		err := r.refuse(fmt.Sprintf("%q… (%d bytes)", name[:32], len(name)),
			fmt.Sprintf("worker name longer than %d bytes", maxNameLen)).(*callError)
		err.msg = fmt.Sprintf("worker name longer than %d bytes", maxNameLen)
		return nil, err
	}
	// One challenge awaits a response at a time: a new login drops the
	// one before, so that logins without responses hold nothing more.
	if r.pending != nil {
		r.b.unregister(r.pending)
	}
	challenge := make([]byte, md5.Size)
	rand.Read(challenge)
	r.pending = &challenger{root: r, name: name, challenge: challenge}
	return tuple{challenge, r.pending}, nil
}

// challenger checks the worker's response to its challenge
// (_PortalAuthChallenger).
type challenger struct {
	root      *root
	name      string
	challenge []byte
}

// refuse logs a refused login and returns the failure a worker takes for
// it (it logs it and tries again later); the last one a connection may
// have closes it once sent.
func (r *root) refuse(name, why string) error {
	r.s.refuse(r.b, name, why)
	r.failures++
	return &callError{
		parents: []string{"twisted.cred.error.UnauthorizedLogin", "twisted.cred.error.LoginFailed"},
		close:   r.failures >= maxLoginFailures,
	}
}

func (ch *challenger) remote(method string, args []any, kw map[string]any) (any, error) {
	if method != "respond" {
		return nil, noSuchMethod(method)
	}
	r, s, b := ch.root, ch.root.s, ch.root.b
	if len(args) != 2 {
		return nil, fmt.Errorf("respond takes the response and the mind")
	}
	response, _ := args[0].(string)
	mind, ok := args[1].(*remoteRef)
	if !ok {
		return nil, fmt.Errorf("respond: the mind is a %T", args[1])
	}
	if r.conn != nil {
		return nil, fmt.Errorf("already logged in as %s", r.conn.name)
	}
	b.unregister(ch) // one response per challenge
	if r.pending == ch {
		r.pending = nil
	}
	attempt, wait, allowed := s.brake.Begin(backoff.AddrKey(b.nc.RemoteAddr().String()))
	if !allowed {
		secs := int(wait.Seconds()) + 1
		err := r.refuse(ch.name, fmt.Sprintf("too many failed logins from this address: retry in %ds", secs)).(*callError)
		err.msg = fmt.Sprintf("too many failed logins from this address: retry in %ds", secs)
		err.close = true
		return nil, err
	}
	password, known := s.Password(ch.name)
	// pb.respond: md5(md5(password) + challenge). Computed for an
	// unknown name too, so that timing does not tell which names exist.
	h := md5.Sum([]byte(password))
	m := md5.New()
	m.Write(h[:])
	m.Write(ch.challenge)
	match := subtle.ConstantTimeCompare(m.Sum(nil), []byte(response)) == 1
	if !known {
		attempt.Failed()
		return nil, r.refuse(ch.name, "unknown worker")
	}
	if !match {
		attempt.Failed()
		return nil, r.refuse(ch.name, "wrong password")
	}
	attempt.Succeeded()

	c := &conn{b: b, name: ch.name, mind: mind, commands: make(map[*command]struct{})}
	// A second login under a logged-in name: buildbot pings the first
	// and refuses the second if it answers, else drops the first.
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrServerClosed
		}
		old := s.byName[ch.name]
		if old == nil {
			s.byName[ch.name] = c
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		err := old.Print(ctx, "master got a duplicate connection")
		cancel()
		if err == nil {
			s.refuse(b, ch.name, "duplicate of a live connection")
			return nil, &callError{parents: []string{"builtins.RuntimeError"}, msg: "rejecting duplicate worker"}
		}
		b.log.Info("pb: old connection of a worker logging in again is gone", "worker", ch.name, "err", err)
		old.Close()
		select {
		case <-old.Done():
		case <-time.After(pingTimeout):
		}
		s.mu.Lock()
		if s.byName[ch.name] == old {
			delete(s.byName, ch.name)
		}
		s.mu.Unlock()
	}
	r.conn = c
	b.nc.SetDeadline(time.Time{})
	b.incoming.setLimit(queuedLoggedIn)
	connlimit.Authenticated(b.nc)
	if tc, ok := b.nc.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
	}
	b.log.Info("pb: worker logged in", "worker", c.name)
	if s.Attach != nil {
		r.wg.Go(func() { s.Attach(c) })
	}
	return &perspective{c: c}, nil
}

// perspective is the worker's avatar (buildbot's pb Connection as a
// pb.Avatar): the worker calls keepalive and shutdown on it.
type perspective struct{ c *conn }

func (p *perspective) remote(method string, args []any, kw map[string]any) (any, error) {
	switch method {
	case "keepalive":
		return nil, nil
	case "shutdown":
		p.c.b.log.Info("pb: worker asks to shut down", "worker", p.c.name)
		return nil, nil
	}
	return nil, noSuchMethod(method)
}
