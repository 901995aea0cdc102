package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Executor runs commands on the worker host.
type Executor interface {
	// Run runs one command; out may be called from any goroutine but
	// never concurrently; it returns when the command and all its
	// processes are gone. ctx is cancelled on Interrupt, and when the
	// worker loses its master or shuts down.
	Run(ctx context.Context, cmd Command, out func(Output)) Result
}

// MasterAddr is one master a worker may connect to.
type MasterAddr struct {
	Addr string // host:port
	// TLS, when not nil, dials this master over TLS with it (see
	// ClientTLS.Config); nil dials plaintext.
	TLS *tls.Config
}

// ClientConfig configures the worker's end of the protocol.
type ClientConfig struct {
	// Masters are the masters the worker may serve, in order: it
	// connects to the first that welcomes it; when that connection ends,
	// it tries the next, round-robin, with the backoff (MinBackoff,
	// MaxBackoff) between full rounds that welcomed nowhere. It holds one
	// connection at a time. Empty means the one master of Master and TLS.
	Masters []MasterAddr
	Master  string // host:port, when Masters is empty
	// Name and Password are the worker's; the password never crosses
	// the wire (see login.go). It may be empty when the worker logs in
	// with a client certificate (TLS.Certificates).
	Name, Password string
	// TLS, when not nil, dials Master over TLS with it (see
	// ClientTLS.Config); nil dials plaintext. Unused with Masters.
	TLS      *tls.Config
	Info     WorkerInfo
	Executor Executor
	Logger   *slog.Logger // nil means discard
	// KeepaliveTime is the gRPC keepalive ping interval; zero means 10s
	// (gRPC never pings more often than every 10s). Besides, a master
	// announces its heartbeat in its Welcome: when nothing comes from it
	// for its heartbeat interval + timeout, the worker takes it for gone
	// and reconnects; so the worker notices a dead master within the
	// smaller of the master's bound and KeepaliveTime + KeepaliveTimeout.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long a ping may go unanswered; zero means 10s.
	KeepaliveTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between connection attempts (with several Masters: between rounds
	// over all of them); zero means 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// OnAttempt, if set, is called after each attempt to connect: with nil
	// once the master welcomed the worker, else with why the attempt
	// failed. It is called from Run's goroutine and must not block long.
	OnAttempt func(err error)
	// Spools keeps the output of resumable commands (Command.ResumeKey):
	// with it, such a command outlives its stream for up to its Keep and
	// is reported to the next master (see resume.go). Nil means the worker
	// kills every command when its stream ends.
	Spools SpoolStore
	// Drain, when closed, stops the worker gently (a first SIGTERM): it
	// takes no new command, lets the running ones finish and report,
	// then closes its stream and Run returns nil. Cancelling Run's ctx
	// (a second SIGTERM) interrupts the running commands meanwhile. Nil
	// means only ctx stops the worker.
	Drain <-chan struct{}
}

// Output batching.
const (
	batchSize     = 256 << 10              // flush when this much output is waiting
	batchInterval = 100 * time.Millisecond // flush at least this often
	// shutdownReport bounds how long a stopping worker waits for the
	// master to take its last reports.
	shutdownReport = 10 * time.Second
)

// Client is the worker's end of the protocol.
type Client struct {
	cfg     ClientConfig
	masters []MasterAddr // at least one
	log     *slog.Logger
	kept    *keeper // resumable commands, which outlive a session
	// loginKey is the key of the worker's proofs (login.go's loginKey),
	// derived at the first challenge and kept across reconnections.
	loginKey func() []byte
}

// NewClient returns a Client; it starts nothing until Run.
func NewClient(cfg ClientConfig) *Client {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepaliveTime == 0 {
		cfg.KeepaliveTime = defaultKeepalive
	}
	if cfg.KeepaliveTimeout == 0 {
		cfg.KeepaliveTimeout = defaultKeepalive
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	masters := slices.Clone(cfg.Masters)
	if len(masters) == 0 {
		masters = []MasterAddr{{Addr: cfg.Master, TLS: cfg.TLS}}
	}
	return &Client{
		cfg: cfg, masters: masters, log: log, kept: newKeeper(cfg.Executor, cfg.Spools, log),
		loginKey: sync.OnceValue(func() []byte { return loginKey(cfg.Password, cfg.Name) }),
	}
}

// refusedHold is how long a worker with several masters leaves alone a
// master that refused it (its name or password, its protocol version, its
// certificate), in MaxBackoffs: the others are tried meanwhile, and the
// refusing one is not hammered.
const refusedHold = 10

// Run connects, says hello, runs commands, and reconnects with jittered
// exponential backoff when the master goes away; it returns nil when ctx
// is done or the worker drained (ClientConfig.Drain), ErrAuthFailed
// (wrapped, with the master's message) on refusal, or ErrVersionMismatch
// (wrapped, naming both versions). When the stream ends, and when ctx is
// done, running commands are cancelled, and Run waits for them before it
// reconnects or returns; a drain waits for them to end by themselves.
// Kept commands no stream has (see ClientConfig.Spools) are killed when
// Run returns.
//
// With several masters, a lost connection moves the worker to the next
// master at once; the backoff comes between rounds in which no master
// welcomed it. A master that refuses the worker is logged and left alone
// for refusedHold MaxBackoffs while the others are tried; Run returns
// the refusals (joined) once every master has refused it.
func (c *Client) Run(ctx context.Context) error {
	defer c.kept.wait()
	defer c.kept.killAll()
	n := len(c.masters)
	backoff := c.cfg.MinBackoff
	welcomedOnce := make([]bool, n) // by master: it welcomed the worker once
	refused := make([]error, n)     // by master: its refusal, until it welcomes the worker
	held := make([]time.Time, n)    // by master: not tried before then (it refused)
	idx, tried := 0, 0
	for {
		if m := c.masters[idx]; !time.Now().Before(held[idx]) {
			log := c.log.With("master", m.Addr)
			welcomed, err := c.session(ctx, m, log)
			if ctx.Err() != nil || c.draining() {
				return nil
			}
			if welcomed {
				backoff = c.cfg.MinBackoff
				welcomedOnce[idx] = true
				refused[idx] = nil
				tried = 0 // a new round, this master its first
			}
			if !welcomed && c.cfg.OnAttempt != nil {
				c.cfg.OnAttempt(err)
			}
			switch {
			case permanent(err) || (!welcomedOnce[idx] && permanentAtStart(err)):
				refused[idx] = err
				if !slices.Contains(refused, nil) {
					if n == 1 {
						if permanent(err) {
							log.Error("master refused worker", "err", err)
						} else {
							log.Error("cannot verify the master: not connecting", "err", err)
						}
						return err
					}
					log.Error("every master refused the worker: giving up", "err", err)
					return errors.Join(refused...)
				}
				held[idx] = time.Now().Add(refusedHold * c.cfg.MaxBackoff)
				log.Error("master refused the worker: trying the others; this one again later", "err", err, "in", refusedHold*c.cfg.MaxBackoff)
			case n > 1 && status.Code(err) == codes.ResourceExhausted:
				// Its brake on failed logins: not a refusal of this
				// worker, but a reason to leave it alone a while.
				held[idx] = time.Now().Add(refusedHold * c.cfg.MaxBackoff)
				log.Warn("master refuses logins from this address for now: trying the others; this one again later", "err", err, "in", refusedHold*c.cfg.MaxBackoff)
			case n > 1:
				log.Warn("connection to master lost; trying the next", "err", err, "next", c.masters[(idx+1)%n].Addr)
			default:
				log.Warn("connection to master lost", "err", err)
			}
		}
		idx = (idx + 1) % n
		if tried++; tried < n {
			continue
		}
		tried = 0
		// Full jitter over the upper half: wait in [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("retrying", "in", wait.Round(time.Millisecond), "master", c.masters[idx].Addr)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-c.cfg.Drain:
			t.Stop()
			c.log.Info("stopping: not connected, so no command to finish")
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// draining reports whether ClientConfig.Drain is closed.
func (c *Client) draining() bool {
	select {
	case <-c.cfg.Drain:
		return true
	default:
		return false
	}
}

// permanent reports whether err ends Client.Run instead of a retry. It is
// the one place that decides what is retryable on the wire.
func permanent(err error) bool {
	return errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrVersionMismatch)
}

// permanentAtStart reports whether err ends Client.Run when the master has
// never welcomed the worker yet: a master whose certificate the worker
// cannot verify is a mistake of the set-up, said at once; later (a master
// swapping its certificate) the worker keeps trying.
func permanentAtStart(err error) bool {
	return errors.Is(err, ErrTLS)
}

// classify turns the master's refusal into the client's errors.
func classify(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return fmt.Errorf("%w: %s", ErrAuthFailed, st.Message())
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrVersionMismatch, st.Message())
	}
	return err
}

// prove answers the master's challenge with the login's Proof (see
// login.go).
func (c *Client) prove(stream grpc.BidiStreamingClient[WorkerMessage, MasterMessage], ch *Challenge, clientNonce []byte) error {
	if err := checkNonce("master's nonce", ch.GetNonce()); err != nil {
		return err
	}
	if c.cfg.Password == "" {
		return fmt.Errorf("%w: the master asks for a password (it did not take a client certificate for worker %q), and none is set", ErrAuthFailed, c.cfg.Name)
	}
	binding, err := channelBinding(tlsState(stream.Context()))
	if err != nil {
		return err
	}
	mac := loginMAC(c.loginKey(), Version, c.cfg.Name, ch.GetNonce(), clientNonce, binding)
	return stream.Send(&WorkerMessage{Msg: &WorkerMessage_Proof{Proof: &Proof{Mac: mac}}})
}

// explain adds to err, the end of a connection attempt, what the worker
// can tell of its cause: the TLS handshake's error (hs, when dialing over
// TLS), or a hint that the master speaks TLS while the worker does not.
func (c *Client) explain(m MasterAddr, err error, hs handshakeErrs) error {
	if m.TLS != nil {
		herr := hs.err()
		if herr == nil {
			// In TLS 1.3 the master checks the worker's client
			// certificate after the worker's side of the handshake is
			// done: its refusal is an alert on the first read.
			if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && strings.Contains(st.Message(), "remote error: tls: ") {
				what := "the master refused the worker's TLS handshake"
				if len(m.TLS.Certificates) > 0 {
					what += " (the worker's client certificate: expired, not yet valid, or not of a CA in the master's client_ca_file?)"
				}
				return fmt.Errorf("%w: %s, not connecting: %s", ErrTLS, what, st.Message())
			}
			return err
		}
		var rh tls.RecordHeaderError
		if errors.As(herr, &rh) {
			return fmt.Errorf("%w: TLS handshake with %s failed: the master's port does not speak TLS (its [protocols.grpc] tls is \"off\"?): %v", ErrTLS, m.Addr, herr)
		}
		return fmt.Errorf("%w: TLS handshake with %s failed, not connecting: %v", ErrTLS, m.Addr, herr)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && strings.Contains(st.Message(), MsgPortSpeaksTLS) {
		return fmt.Errorf("%w: %s, not connecting", ErrTLS, MsgPortSpeaksTLS)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && strings.Contains(st.Message(), "server preface") {
		return fmt.Errorf("%w (the master's port may speak TLS: give the worker -tls-fingerprint, -tls-ca or -tls)", err)
	}
	return err
}

// session runs one connection to the master, until the stream ends or ctx
// is done. welcomed reports whether the master accepted the hello.
func (c *Client) session(ctx context.Context, m MasterAddr, log *slog.Logger) (welcomed bool, err error) {
	creds := insecure.NewCredentials()
	var hs handshakeErrs
	if m.TLS != nil {
		hs = newHandshakeErrs(m.TLS)
		creds = hs
	}
	cc, err := grpc.NewClient(m.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                c.cfg.KeepaliveTime,
			Timeout:             c.cfg.KeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		experimental.WithBufferPool(buffers),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec{})),
	)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", m.Addr, err)
	}
	defer cc.Close()

	// The stream outlives ctx so that interrupted commands can still
	// report; it ends when the session does.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stream, err := NewMasterClient(cc).Connect(sctx)
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", m.Addr, c.explain(m, err, hs))
	}
	clientNonce := newNonce()
	err = stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{
		ProtocolVersion: Version,
		Name:            c.cfg.Name,
		Info:            infoToPB(c.cfg.Info),
		Kept:            keptToPB(c.kept.report(m.Addr)),
		ClientNonce:     clientNonce,
	}}})
	if err != nil {
		_, rerr := stream.Recv() // the stream's real error
		return false, fmt.Errorf("send hello: %w", c.explain(m, classify(rerr), hs))
	}

	// The master's answer: a Challenge (then our Proof, then its
	// Welcome), or a Welcome at once (a client certificate).
	first := make(chan error, 1)
	var welcome *Welcome
	go func() {
		msg, err := stream.Recv()
		if err == nil {
			if ch := msg.GetChallenge(); ch != nil {
				if err = c.prove(stream, ch, clientNonce); err == nil {
					msg, err = stream.Recv()
				}
			}
		}
		if err == nil && msg.GetWelcome() == nil {
			err = fmt.Errorf("master answered the login with %T, not a welcome", msg.GetMsg())
		}
		welcome = msg.GetWelcome()
		first <- err
	}()
	select {
	case err = <-first:
	case <-ctx.Done():
		cancel()
		<-first
		return false, ctx.Err()
	case <-c.cfg.Drain:
		cancel()
		<-first
		return false, errors.New("stopping before the master welcomed the worker")
	}
	if err != nil {
		return false, fmt.Errorf("hello to %s: %w", m.Addr, c.explain(m, classify(err), hs))
	}
	if v := welcome.GetProtocolVersion(); v != Version {
		return false, fmt.Errorf("%w: master speaks protocol version %d, worker speaks version %d", ErrVersionMismatch, v, Version)
	}
	log.Info("connected to master", "master_version", welcome.GetMasterVersion())
	if c.cfg.OnAttempt != nil {
		c.cfg.OnAttempt(nil)
	}

	s := &session{
		master: m.Addr,
		exec:   c.cfg.Executor,
		log:    log,
		stream: stream,
		cmds:   make(map[uint64]context.CancelFunc),
		reads:  make(map[uint64]chan *DownloadChunk),
		keeper: c.kept,
		kept:   make(map[uint64]context.CancelFunc),
	}
	// The master's heartbeat: nothing from it for its interval + timeout
	// means it is gone, even while the TCP connection looks alive.
	var silent atomic.Bool
	quiet := welcome.GetHeartbeatInterval().AsDuration() + welcome.GetHeartbeatTimeout().AsDuration()
	if welcome.GetHeartbeatInterval().AsDuration() > 0 {
		s.heartbeat = time.AfterFunc(quiet, func() { silent.Store(true); cancel() })
		s.quiet = quiet
		defer s.heartbeat.Stop()
	}
	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive() }()
	lost := func(err error) (bool, error) {
		// The stream is gone: the commands' reports can't be sent.
		cancel()
		s.stop()
		if silent.Load() {
			return true, fmt.Errorf("stream from %s: nothing from the master for %s (its heartbeat interval + timeout): taking it for gone", m.Addr, quiet)
		}
		return true, fmt.Errorf("stream from %s: %w", m.Addr, err)
	}
	select {
	case err = <-recvErr:
		return lost(err)
	case <-ctx.Done():
	case <-c.cfg.Drain:
		// A gentle stop: no new command; the running ones finish and
		// report, then the worker detaches. The master, told so, starts
		// no new build here, and ends the builds whose next steps cannot
		// run RETRY, to build them again elsewhere.
		idle, running := s.drain()
		log.Info("stopping: the running commands finish first, then the worker detaches from its master; stop again (SIGTERM or SIGINT) to interrupt them", "running", running)
		select {
		case <-idle:
			log.Info("no command running: detaching from the master")
			s.stop()
			s.closeSend()
			select {
			case <-recvErr:
			case <-time.After(shutdownReport):
				cancel()
				<-recvErr
			}
			return true, nil
		case err = <-recvErr:
			log.Warn("stream lost while stopping: killing the running commands")
			return lost(err)
		case <-ctx.Done():
			log.Info("stopping now: interrupting the running commands")
		}
	}
	// Shutting down: kill the commands, report them, and end the stream
	// cleanly, unless the master does not take the reports in time.
	watchdog := time.AfterFunc(shutdownReport, cancel)
	defer watchdog.Stop()
	c.kept.killAll()
	s.stop()
	s.closeSend()
	<-recvErr
	return true, ctx.Err()
}

// session is one welcomed stream on the worker.
type session struct {
	master string // the master's address, as in ClientConfig
	exec   Executor
	keeper *keeper // the Client's resumable commands
	log    *slog.Logger
	stream grpc.BidiStreamingClient[WorkerMessage, MasterMessage]
	wg     sync.WaitGroup // command goroutines

	sendMu sync.Mutex // serialises stream.Send

	// heartbeat, when the master announced one, cancels the stream after
	// quiet without a message; receive resets it.
	heartbeat *time.Timer
	quiet     time.Duration

	// startMu orders start's check of stopped and its record of the
	// command (in cmds or kept) against drain: a command drain does not
	// list is one start refuses. Taken before mu.
	startMu sync.Mutex

	mu      sync.Mutex
	stopped bool                           // guarded by mu; no new command
	idle    chan struct{}                  // guarded by mu; non-nil once draining, closed when no command runs
	cmds    map[uint64]context.CancelFunc  // guarded by mu; running commands
	kept    map[uint64]context.CancelFunc  // guarded by mu; resumable commands attached to this stream
	reads   map[uint64]chan *DownloadChunk // guarded by mu; downloads' answers, one in flight each
}

// drain makes s take no new command, tells the master so (a Draining
// naming the commands that go on), and returns a channel closed once no
// command runs (now, or when the last one has reported), and how many run.
func (s *session) drain() (idle <-chan struct{}, running int) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.mu.Lock()
	s.stopped = true
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	// A command that ended before this point has sent its Complete
	// already (it leaves cmds after), so the master reads it first.
	ids := make([]uint64, 0, len(s.cmds)+len(s.kept))
	for id := range s.cmds {
		ids = append(ids, id)
	}
	for id := range s.kept {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s.checkIdleLocked()
	idle = s.idle
	s.mu.Unlock()
	// An old master ignores it; a lost stream shows in receive.
	_ = s.send(&WorkerMessage{Msg: &WorkerMessage_Draining{Draining: &Draining{Running: ids}}})
	return idle, len(ids)
}

// checkIdleLocked closes s.idle when s drains and no command runs; s.mu
// is held.
func (s *session) checkIdleLocked() {
	if s.idle == nil || len(s.cmds) > 0 || len(s.kept) > 0 {
		return
	}
	select {
	case <-s.idle:
	default:
		close(s.idle)
	}
}

func (s *session) send(m *WorkerMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

// closeSend ends the worker's side of the stream; a Pong may still be on
// its way, so it takes sendMu as send does.
func (s *session) closeSend() {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	_ = s.stream.CloseSend()
}

// receive handles the master's messages until the stream ends.
func (s *session) receive() error {
	// Pongs are sent from their own goroutine: a send may wait behind
	// output, and receiving must go on meanwhile.
	pongs := make(chan uint64, 1)
	var ponger sync.WaitGroup
	ponger.Go(func() {
		for seq := range pongs {
			if err := s.send(&WorkerMessage{Msg: &WorkerMessage_Pong{Pong: &Pong{Seq: seq}}}); err != nil {
				s.log.Debug("cannot answer ping", "err", err)
			}
		}
	})
	defer ponger.Wait()
	defer close(pongs)
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return err
		}
		if s.heartbeat != nil {
			s.heartbeat.Reset(s.quiet)
		}
		switch msg := m.GetMsg().(type) {
		case *MasterMessage_Ping:
			select {
			case pongs <- msg.Ping.GetSeq():
			default: // a Pong is on its way already; it answers this too
			}
		case *MasterMessage_StartCommand:
			s.start(msg.StartCommand)
		case *MasterMessage_Reattach:
			s.keeper.reattach(s, msg.Reattach)
		case *MasterMessage_Interrupt:
			id := msg.Interrupt.GetCommandId()
			s.mu.Lock()
			cancel := s.cmds[id]
			if cancel == nil {
				cancel = s.kept[id]
			}
			s.mu.Unlock()
			if cancel == nil {
				s.log.Info("interrupt for a command not running", "command", id)
				continue
			}
			s.log.Info("interrupting command", "command", id, "why", msg.Interrupt.GetWhy())
			cancel()
		case *MasterMessage_DownloadChunk:
			id := msg.DownloadChunk.GetCommandId()
			s.mu.Lock()
			ch := s.reads[id]
			s.mu.Unlock()
			select {
			case ch <- msg.DownloadChunk: // never blocks: one read in flight
			default:
				s.log.Warn("download chunk not asked for", "command", id)
			}
		default:
			s.log.Warn("unexpected message from master", "type", fmt.Sprintf("%T", msg))
		}
	}
}

// start runs one command in its own goroutine.
func (s *session) start(m *StartCommand) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	id := m.GetCommandId()
	log := s.log.With("command", id, "builder", m.GetBuilder())
	if n := m.GetBuild(); n != 0 {
		log = log.With("build", n)
	}
	cmd, err := commandFromPB(m)
	if err != nil {
		log.Warn("cannot run command", "err", err)
		_ = s.send(&WorkerMessage{Msg: &WorkerMessage_Complete{Complete: resultToPB(id, Result{ExitCode: -1, Err: err.Error()})}})
		return
	}
	if cmd.Builder != "" {
		s.keeper.yield(s.master, cmd.Builder)
	}
	if s.keeper.resumable(cmd) {
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if !stopped && s.keeper.start(s, id, cmd, log) {
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if s.stopped || s.cmds[id] != nil {
		s.mu.Unlock()
		cancel()
		// Not answered: a stopping worker's build ends RETRY when the
		// stream ends, and is built again (an answer would have the
		// master retry it here at once, again and again).
		log.Warn("command refused: stopping, or its id is in use")
		return
	}
	s.cmds[id] = cancel
	if cmd.Upload != nil {
		cmd.Upload.Sink = &uploadWriter{s: s, id: id}
	}
	if cmd.Download != nil {
		ch := make(chan *DownloadChunk, 1)
		s.reads[id] = ch
		cmd.Download.Source = &downloadReader{ctx: ctx, s: s, id: id, ch: ch}
	}
	defer s.mu.Unlock() // stop waits for s.wg only after taking s.mu
	s.wg.Go(func() {
		defer func() {
			s.mu.Lock()
			delete(s.cmds, id)
			delete(s.reads, id)
			s.checkIdleLocked() // after its Complete was sent
			s.mu.Unlock()
			cancel()
		}()
		log.Info("command started")
		b := newBatcher(id, s.send)
		res := s.exec.Run(ctx, cmd, b.add)
		b.close()
		log.Info("command finished", "exit_code", res.ExitCode, "signal", res.Signal,
			"timed_out", res.TimedOut, "interrupted", res.Interrupted, "err", NewHider(cmd.Secrets).Hide(res.Err), "elapsed_seconds", res.Elapsed.Seconds())
		if err := s.send(&WorkerMessage{Msg: &WorkerMessage_Complete{Complete: resultToPB(id, res)}}); err != nil {
			log.Warn("cannot report command result", "err", err)
		}
	})
}

// stop cancels every running command and waits for them.
func (s *session) stop() {
	s.keeper.detach(s)
	s.mu.Lock()
	s.stopped = true
	for _, cancel := range s.cmds {
		cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// batcher joins a command's output into messages of at most batchSize
// bytes, sent when full or batchInterval after the last flush. A full
// batch is sent from add, so a slow stream blocks the caller (the pipe
// reader) instead of growing a buffer.
type batcher struct {
	id    uint64
	send  func(*WorkerMessage) error
	stopc chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	pending []*OutputChunk // guarded by mu; in order, adjacent chunks of one stream joined
	size    int            // guarded by mu
	broken  bool           // guarded by mu; the stream failed, drop output
}

func newBatcher(id uint64, send func(*WorkerMessage) error) *batcher {
	b := &batcher{id: id, send: send, stopc: make(chan struct{}), done: make(chan struct{})}
	go b.tick()
	return b
}

func (b *batcher) tick() {
	defer close(b.done)
	t := time.NewTicker(batchInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopc:
			return
		case <-t.C:
			b.mu.Lock()
			b.flush()
			b.mu.Unlock()
		}
	}
}

func (b *batcher) add(o Output) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := o.Data
	st := streamToPB(o.Stream)
	for len(data) > 0 {
		n := min(len(data), batchSize-b.size)
		if k := len(b.pending); k > 0 && b.pending[k-1].Stream == st && b.pending[k-1].LogName == o.Log {
			b.pending[k-1].Data = append(b.pending[k-1].Data, data[:n]...)
		} else {
			b.pending = append(b.pending, &OutputChunk{CommandId: b.id, Stream: st, LogName: o.Log, Data: append(make([]byte, 0, batchSize-b.size), data[:n]...)})
		}
		b.size += n
		data = data[n:]
		if b.size >= batchSize {
			b.flush()
		}
	}
}

// flush sends the pending chunks; b.mu is held.
func (b *batcher) flush() {
	for _, o := range b.pending {
		if b.broken {
			break
		}
		if err := b.send(&WorkerMessage{Msg: &WorkerMessage_Output{Output: o}}); err != nil {
			b.broken = true
		}
	}
	b.pending = b.pending[:0]
	b.size = 0
}

// close stops the ticker and sends what is left.
func (b *batcher) close() {
	close(b.stopc)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flush()
}

// uploadWriter sends an upload's data to the master in chunks of at most
// MaxChunk bytes. Write blocks while the stream is full: the master's pace
// is the worker's.
type uploadWriter struct {
	s  *session
	id uint64
}

func (w *uploadWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxChunk)
		err := w.s.send(&WorkerMessage{Msg: &WorkerMessage_UploadChunk{UploadChunk: &UploadChunk{
			CommandId: w.id,
			Data:      p[:k],
		}}})
		if err != nil {
			return n, fmt.Errorf("send upload chunk: %w", err)
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// downloadReader pulls a download from the master, one chunk per Read.
type downloadReader struct {
	ctx context.Context
	s   *session
	id  uint64
	ch  chan *DownloadChunk
	eof bool
}

func (r *downloadReader) Read(p []byte) (int, error) {
	if r.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	err := r.s.send(&WorkerMessage{Msg: &WorkerMessage_Read{Read: &ReadRequest{
		CommandId: r.id,
		Length:    int32(min(len(p), MaxChunk)),
	}}})
	if err != nil {
		return 0, fmt.Errorf("ask for download chunk: %w", err)
	}
	select {
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	case c := <-r.ch:
		if c.GetError() != "" {
			return 0, errors.New(c.GetError())
		}
		n := copy(p, c.GetData())
		if c.GetEof() {
			r.eof = true
			if n == 0 {
				return 0, io.EOF
			}
		}
		return n, nil
	}
}
