package protocol

import (
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gbb-ci/gbb/internal/backoff"
	"github.com/gbb-ci/gbb/internal/logsample"
)

// ServerConfig configures the master's end of the protocol.
type ServerConfig struct {
	// Password returns the password of the worker called name, and
	// whether such a worker is configured; the worker proves it knows the
	// password without sending it (see login.go). Nil accepts everyone
	// without a challenge.
	Password func(name string) (password string, ok bool)
	// TLS, when not nil, serves the worker port over TLS with it (see
	// ServerTLS); nil serves plaintext, and a worker connecting from an
	// address that is not a loopback one is logged with a warning. A
	// worker whose client certificate TLS verified (its ClientCAs), with
	// its name as the certificate's CN, logs in without a password.
	TLS *tls.Config
	// Attach is called after a worker's hello is accepted; the WorkerConn
	// is usable until Done() closes. Attach must not block long. Nil
	// means the connection is kept but never used.
	Attach func(*WorkerConn)
	// Logger: nil means discard.
	Logger *slog.Logger
	// KeepaliveTime is the gRPC keepalive ping interval, and the interval
	// of the Ping heartbeat on each worker's stream; zero means 10s. Values
	// under 1s are raised to 1s (gRPC's floor).
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long a ping may go unanswered; zero means
	// 10s. A worker whose host or network died is found dead within
	// KeepaliveTime + KeepaliveTimeout. It is also how long a connected
	// worker has to answer a Ping when another worker says hello under
	// its name.
	KeepaliveTimeout time.Duration
	// HelloTimeout bounds a new connection's HTTP/2 handshake, and then
	// the time until its worker's hello; a connection that takes longer
	// is dropped and logged. Zero means KeepaliveTime + KeepaliveTimeout.
	HelloTimeout time.Duration
	// MasterVersion is sent to workers in Welcome.
	MasterVersion string
	// LoginBurst and LoginRefill brake password guessing: a source
	// address (IPv4, or IPv6 /64) may fail LoginBurst logins in a row,
	// then one per LoginRefill; past that its hellos are refused
	// (ResourceExhausted, saying when to retry) before the password is
	// checked. Zero means 10 and 6s. Other addresses are not slowed.
	LoginBurst  int
	LoginRefill time.Duration
}

// Timings of the master's end.
const (
	defaultKeepalive = 10 * time.Second
	minKeepalive     = time.Second      // gRPC's floor for a server's keepalive pings
	interruptWait    = 30 * time.Second // Run waits this long for Complete after Interrupt
	stopGrace        = 2 * time.Second  // GracefulStop's bound in Serve
	// keepaliveMinTime is the shortest ping interval the master permits
	// from workers (gRPC clients never ping more often than every 10s).
	keepaliveMinTime = 5 * time.Second
)

// The brake on password guessing: the defaults of ServerConfig.LoginBurst
// and LoginRefill, and the size of its address table. Past brakeAddrs,
// addresses that failed nothing lately are forgotten, and if none has, the
// addresses not in the table share one bucket (backoff.Config.ShareOverflow),
// except those that logged in lately (at most brakeAddrs/4).
const (
	defaultLoginBurst  = 10
	defaultLoginRefill = 6 * time.Second
	brakeAddrs         = 4096
)

// Bounds of a hello, checked before anything else is done with it (a
// hello over one is refused with InvalidArgument and logged without its
// strings): its encoded size, its worker's name (buildbot's worker names
// are identifiers of at most 50 characters) and the kept commands it
// lists (a worker keeps one per step running when its stream ended).
const (
	maxHelloSize = 256<<10 + 4<<10 // MaxKept keys of maxKeptKey, a name, the host's info, a nonce
	// MaxWorkerName is the longest worker name a hello may carry, in
	// bytes; pkg/config refuses longer names.
	MaxWorkerName = 128
	// MaxKept is the most kept commands a hello may list.
	MaxKept = 1000
	// maxKeptKey bounds a kept command's key (the master's are ~40
	// bytes).
	maxKeptKey = 256
)

// logName is s, a string a peer sent, bounded for a log line: past 64
// bytes it is cut and its length given.
func logName(s string) string {
	if len(s) <= 64 {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", strings.ToValidUTF8(s[:64], ""), len(s))
}

// checkHelloBounds applies the bounds of a hello.
func checkHelloBounds(h *Hello) error {
	if n := proto.Size(h); n > maxHelloSize {
		return fmt.Errorf("the hello is %d bytes, more than %d", n, maxHelloSize)
	}
	if n := len(h.GetName()); n > MaxWorkerName {
		return fmt.Errorf("the worker name is %d bytes long, more than %d", n, MaxWorkerName)
	}
	if n := len(h.GetKept()); n > MaxKept {
		return fmt.Errorf("the hello lists %d kept commands, more than %d", n, MaxKept)
	}
	for _, k := range h.GetKept() {
		if n := len(k.GetResumeKey()); n > maxKeptKey {
			return fmt.Errorf("a kept command's key is %d bytes long, more than %d", n, maxKeptKey)
		}
	}
	return nil
}

// Sampling of the log lines about refused and dropped connections: a few
// at once, then one per logSample, each counting those left out.
const (
	logSample = 10 * time.Second
	logBurst  = 10
	// logKeyBurst is the budget of each address in a logsample.Keyed.
	logKeyBurst = 5
)

// maxRecvMsg is the largest message the master reads from a worker
// (gRPC's default: 4 MiB); a larger one ends its stream. A worker's
// messages are at most an output batch (batchSize, 256 KiB) or a hello
// (maxHelloSize). Before a hello is accepted, a connection holds at most
// maxStreams messages of this size: gRPC's bounds are per server, not per
// connection state, so these bound what a connection that never logs in
// can make the master hold.
const (
	maxRecvMsg = 1 << 20
	// maxStreams is the most streams at once on one connection; a worker
	// opens one per connection (a new one after a refusal).
	maxStreams = 2
)

// readBuffer is the read buffer of each worker's connection.
const readBuffer = 4 << 10

// receiveWindow is the flow-control window of each worker's connection
// and stream: what a worker may send ahead of the master's reading. A
// fixed window turns off gRPC's estimate of the link's bandwidth-delay
// product, which grows a busy stream's window up to 16 MiB: with twenty
// steps logging at once, that was the master's memory, not the logs
// (peak RSS 510 MB; 201 MB with this window, 620 MB with 4 MiB). On a
// link with 50 ms of round trip it allows about 20 MB/s per worker.
const receiveWindow = 1 << 20

// Server is the master's end of the protocol: it accepts worker streams.
type Server struct {
	cfg           ServerConfig
	log           *slog.Logger
	interruptWait time.Duration

	stopping chan struct{}    // closed when Serve's ctx is done
	wg       sync.WaitGroup   // stream receive goroutines
	guard    guard            // the worker port's connections, for logging bad input
	brake    *backoff.Limiter // failed logins by source address (backoff.AddrKey)
	// unknownKey keys the proof expected of a worker name that is not
	// configured: random, so that no proof matches, and the check takes as
	// long as a known name's.
	unknownKey []byte
	keys       keyCache // the login keys of configured workers
	// Sampled log lines of what anyone on the network can cause at will.
	refusedLog, brakeLog, droppedLog, guardLog *logsample.Sampler
	// loginLog samples failed password checks, and tlsLog failed TLS
	// handshakes, per source address (backoff.AddrKey), apart from the
	// cheap junk above: each address's first failures are always logged,
	// whatever other addresses send. The brake bounds how many logins an
	// address can fail, so how many lines it can cause.
	loginLog, tlsLog *logsample.Keyed

	mu    sync.Mutex
	conns map[string]*WorkerConn // guarded by mu; connected workers by name
}

// NewServer returns a Server; it starts nothing until Serve.
func NewServer(cfg ServerConfig) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepaliveTime == 0 {
		cfg.KeepaliveTime = defaultKeepalive
	}
	cfg.KeepaliveTime = max(cfg.KeepaliveTime, minKeepalive)
	if cfg.KeepaliveTimeout == 0 {
		cfg.KeepaliveTimeout = defaultKeepalive
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = cfg.KeepaliveTime + cfg.KeepaliveTimeout
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = defaultLoginBurst
	}
	if cfg.LoginRefill <= 0 {
		cfg.LoginRefill = defaultLoginRefill
	}
	return &Server{
		unknownKey:    newNonce(),
		brake:         backoff.New(backoff.Config{Burst: cfg.LoginBurst, Every: cfg.LoginRefill, MaxKeys: brakeAddrs, ShareOverflow: true}),
		refusedLog:    logsample.New(logSample, logBurst),
		brakeLog:      logsample.New(logSample, logBurst),
		droppedLog:    logsample.New(logSample, logBurst),
		guardLog:      logsample.New(logSample, logBurst),
		loginLog:      logsample.NewKeyed(logSample, logKeyBurst, brakeAddrs),
		tlsLog:        logsample.NewKeyed(logSample, logKeyBurst, brakeAddrs),
		cfg:           cfg,
		log:           log,
		interruptWait: interruptWait,
		stopping:      make(chan struct{}),
		conns:         make(map[string]*WorkerConn),
	}
}

// Serve accepts worker streams on lis until ctx is done. It then ends every
// stream (each WorkerConn's Done closes, with Runs in flight returning
// ErrConnectionLost) and returns after every stream goroutine has exited.
// It returns nil after ctx is done, or the listener's error. Serve may be
// called once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	lis = s.guard.wrap(lis, s.log, s.guardLog, s.tlsLog, s.cfg.HelloTimeout, s.cfg.TLS != nil)
	var creds []grpc.ServerOption
	if s.cfg.TLS != nil {
		creds = append(creds, grpc.Creds(guardedTLS{credentials.NewTLS(s.cfg.TLS)}))
	}
	gs := grpc.NewServer(append(creds,
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    s.cfg.KeepaliveTime,
			Timeout: s.cfg.KeepaliveTimeout,
			// A connection that never opens a stream (or whose
			// stream ended) is closed: workers keep theirs open.
			MaxConnectionIdle: s.cfg.HelloTimeout,
		}),
		// The HTTP/2 handshake of a new connection must be done by then.
		grpc.ConnectionTimeout(s.cfg.HelloTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             min(keepaliveMinTime, s.cfg.KeepaliveTime),
			PermitWithoutStream: true,
		}),
		grpc.WaitForHandlers(true),
		grpc.InitialWindowSize(receiveWindow),
		grpc.InitialConnWindowSize(receiveWindow),
		// Each connection keeps its read buffer while idle: 32 KiB by
		// default, 32 MB of a master's heap for 1,000 workers. Frames
		// larger than the buffer are read past it, so output still
		// arrives in few reads.
		grpc.ReadBufferSize(readBuffer),
		grpc.MaxRecvMsgSize(maxRecvMsg),
		grpc.MaxConcurrentStreams(maxStreams),
		experimental.BufferPool(buffers),
		grpc.ForceServerCodecV2(codec{}),
	)...)
	RegisterMasterServer(gs, service{s: s})

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		errc = nil
		if err != nil {
			err = fmt.Errorf("serve workers: %w", err)
		}
	}
	close(s.stopping) // handlers return, which ends their streams
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		gs.Stop()
		<-stopped
	}
	if errc != nil {
		<-errc
	}
	s.wg.Wait()
	return err
}

// service is the generated MasterServer, kept off Server's API.
type service struct {
	UnimplementedMasterServer
	s *Server
}

func (sv service) Connect(stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
	return sv.s.connect(stream)
}

// connect serves one worker's stream.
func (s *Server) connect(stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
	ctx := stream.Context()
	remote := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	log := s.log.With("remote", remote)

	// The receiving goroutine outlives this handler by the moment it takes
	// Recv to fail after the handler returns; Serve waits for it. Before
	// the login is done, it hands each message over (prec) and waits to be
	// told (step) whether to read another one of the login, to stop (nil),
	// or to serve the logged-in connection.
	prec := make(chan *WorkerMessage, 1)
	step := make(chan loginStep, 1)
	recvErr := make(chan error, 1)
	s.wg.Go(func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			s.guard.spoke(remote)
			prec <- m
			st := <-step
			if st.more {
				continue
			}
			if st.c != nil {
				recvErr <- st.c.receive(stream)
			}
			return
		}
	})
	handed := false // whether step holds the login's outcome
	defer func() {
		if !handed {
			step <- loginStep{}
		}
	}()

	// The hello, and the rest of the login, within HelloTimeout.
	timer := time.NewTimer(s.cfg.HelloTimeout)
	defer timer.Stop()
	next := func(what string) (*WorkerMessage, error) {
		select {
		case m := <-prec:
			return m, nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				s.droppedLog.Log(log, slog.LevelInfo, "worker stream ended before "+what, "err", err)
			} else {
				s.droppedLog.Log(log, slog.LevelWarn, "worker port: stream dropped before "+what, "err", err)
			}
			return nil, err
		case <-timer.C:
			s.droppedLog.Log(log, slog.LevelWarn, "worker port: stream dropped: no "+what, "waited", s.cfg.HelloTimeout)
			return nil, status.Errorf(codes.DeadlineExceeded, "no %s from worker within %s", what, s.cfg.HelloTimeout)
		case <-s.stopping:
			return nil, status.Error(codes.Unavailable, "master shutting down")
		}
	}
	m, err := next("hello")
	if err != nil {
		return err
	}
	hello := m.GetHello()
	if err := s.checkHello(hello, log); err != nil {
		return err
	}
	log = log.With("worker", hello.GetName())
	if err := s.login(stream, hello, remote, log, func() (*WorkerMessage, error) {
		step <- loginStep{more: true}
		return next("login proof")
	}); err != nil {
		return err
	}
	c, err := s.accept(hello, remote, log)
	if err != nil {
		return err
	}
	// Logged in: a cap on connections not authenticated (connlimit's
	// Evict) no longer counts this one, nor closes it.
	s.guard.authenticated(remote)
	defer s.detach(c)
	log = c.log
	if err := stream.Send(&MasterMessage{Msg: &MasterMessage_Welcome{Welcome: &Welcome{
		ProtocolVersion:   Version,
		MasterVersion:     s.cfg.MasterVersion,
		HeartbeatInterval: durationpb.New(s.cfg.KeepaliveTime),
		HeartbeatTimeout:  durationpb.New(s.cfg.KeepaliveTimeout),
	}}}); err != nil {
		c.finish(fmt.Errorf("send welcome: %w", err))
		return err
	}
	handed = true
	step <- loginStep{c: c}
	log.Info("worker attached", "version", c.info.Version, "os", c.info.OS, "arch", c.info.Arch, "tls", s.cfg.TLS != nil)
	if s.cfg.TLS == nil && !loopback(remote) {
		log.Warn("worker connected without TLS from an address that is not a loopback one: its commands, output and secrets cross the network in clear; set tls in [protocols.grpc] unless the link is private (a jail's lo1)")
	}
	if s.cfg.Attach != nil {
		s.cfg.Attach(c)
	}

	heartbeat := time.NewTicker(s.cfg.KeepaliveTime)
	defer heartbeat.Stop()
	for {
		var m *MasterMessage
		select {
		case m = <-c.sendq:
		case <-heartbeat.C:
			m = &MasterMessage{Msg: &MasterMessage_Ping{Ping: &Ping{Seq: c.pingSeq.Add(1)}}}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				err = errors.New("worker closed the stream")
			}
			c.finish(err)
			log.Info("worker detached", "err", err)
			return nil
		case <-s.stopping:
			c.finish(ErrMasterStopping)
			return status.Error(codes.Unavailable, "master shutting down")
		case <-c.done:
			// Close ended the connection.
			log.Info("worker detached", "err", c.Err())
			return status.Error(codes.Aborted, c.Err().Error())
		}
		if err := stream.Send(m); err != nil {
			c.finish(fmt.Errorf("send to worker: %w", err))
			log.Info("worker detached", "err", err)
			return err
		}
	}
}

// loginStep tells a stream's receiving goroutine what to do after a
// message of the login: read another one (more), stop (c nil), or serve
// the logged-in connection c.
type loginStep struct {
	more bool
	c    *WorkerConn
}

// checkHello checks that m is a hello within bounds, of this protocol
// version.
func (s *Server) checkHello(h *Hello, log *slog.Logger) error {
	if h == nil {
		return status.Error(codes.InvalidArgument, "first message must be hello")
	}
	if err := checkHelloBounds(h); err != nil {
		s.refusedLog.Log(log, slog.LevelWarn, "worker refused: hello out of bounds", "worker", logName(h.GetName()), "err", err)
		return status.Errorf(codes.InvalidArgument, "hello refused: %v", err)
	}
	name := h.GetName()
	log = log.With("worker", name)
	//lint:ignore SA1019 the deprecated field is how an old worker is told.
	if v := h.GetProtocolVersion(); v == 1 || h.GetPassword() != "" {
		s.refusedLog.Log(log, slog.LevelWarn, "worker refused: its hello carried a password in clear (protocol 1 does); upgrade it, and change its password if the link is not trusted",
			"worker_protocol", v, "master_protocol", Version)
		return status.Errorf(codes.FailedPrecondition,
			"worker %q sent its password in clear in its hello (protocol version %d; the master speaks version %d, whose password never crosses the wire): upgrade the worker, and change its password if the link is not trusted", name, v, Version)
	}
	if v := h.GetProtocolVersion(); v != Version {
		upgrade := "the worker"
		if v > Version {
			upgrade = "the master"
		}
		s.refusedLog.Log(log, slog.LevelWarn, "worker refused: protocol version mismatch", "worker_protocol", v, "master_protocol", Version, "upgrade", upgrade)
		return status.Errorf(codes.FailedPrecondition,
			"worker %q speaks protocol version %d, master speaks version %d: upgrade %s", name, v, Version, upgrade)
	}
	if err := checkNonce("client nonce", h.GetClientNonce()); err != nil {
		s.refusedLog.Log(log, slog.LevelWarn, "worker refused: hello out of bounds", "err", err)
		return status.Errorf(codes.InvalidArgument, "hello refused: %v", err)
	}
	return nil
}

// login checks that the worker of hello h is who it says (see login.go):
// by its TLS client certificate, or by a Challenge and its Proof (next
// returns the worker's next message), through authenticate's brake.
func (s *Server) login(stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage], h *Hello, remote string, log *slog.Logger, next func() (*WorkerMessage, error)) error {
	if s.cfg.Password == nil {
		return nil
	}
	name := h.GetName()
	state := tlsState(stream.Context())
	return s.authenticate(remote, name, log, func(key []byte, known bool) (bool, error) {
		if known && certNames(state, name) {
			log.Info("worker logged in with its client certificate")
			return true, nil
		}
		if cn, ok := certCN(state); ok && cn != name {
			// Logged as the answer's fate is: the password decides.
			log.Warn("worker's client certificate not accepted for its name: its CN is another worker's name; asking for the password instead",
				"certificate_cn", logName(cn))
		}
		binding, err := channelBinding(state)
		if err != nil {
			return false, status.Errorf(codes.Unauthenticated, "worker %q: %v", name, err)
		}
		nonce := newNonce()
		if err := stream.Send(&MasterMessage{Msg: &MasterMessage_Challenge{Challenge: &Challenge{Nonce: nonce}}}); err != nil {
			return false, err
		}
		m, err := next()
		if err != nil {
			return false, err
		}
		proof := m.GetProof()
		if proof == nil {
			s.refusedLog.Log(log, slog.LevelWarn, "worker refused: no proof after the challenge", "got", fmt.Sprintf("%T", m.GetMsg()))
			return false, status.Error(codes.InvalidArgument, "the answer to a challenge must be a proof")
		}
		want := loginMAC(key, Version, name, nonce, h.GetClientNonce(), binding)
		return hmac.Equal(want, proof.GetMac()) && known, nil
	})
}

// authenticate runs one login of the worker called name, at remote: prove
// gets the key of its proof (its password, or a random key for a name not
// configured: known false) and reports whether the worker proved it, or
// why the login could not go on. From an address that failed too many
// logins lately (see ServerConfig.LoginBurst), authenticate refuses
// (ResourceExhausted, saying when to retry) before anything is asked of
// the worker. An unknown name and a wrong password get the same answer;
// the log tells them apart, with the address.
func (s *Server) authenticate(remote, name string, log *slog.Logger, prove func(key []byte, known bool) (bool, error)) error {
	src := backoff.AddrKey(remote)
	at, wait, ok := s.brake.Begin(src)
	if !ok {
		wait = max(wait.Round(time.Second), time.Second)
		s.brakeLog.Log(log, slog.LevelWarn, "worker refused: too many failed logins from its address", "address", src, "retry_in", wait)
		return status.Errorf(codes.ResourceExhausted, "too many failed logins from %s: retry in %s", src, wait)
	}
	password, known := s.cfg.Password(name)
	key := s.unknownKey
	if known {
		key = s.keys.key(name, password)
	}
	proved, err := prove(key, known)
	if err != nil {
		at.Failed()
		return err
	}
	if !proved {
		shared := at.Failed()
		s.loginLog.Log(src, log, slog.LevelWarn, "worker refused: wrong name or password", "address", src, "known_name", known, "brake_table_full", shared)
		return status.Errorf(codes.Unauthenticated, "worker %q: wrong name or password", name)
	}
	at.Succeeded()
	return nil
}

// accept registers the connection of a worker that logged in. When a
// connection of that name is registered already, it is asked whether it
// is alive (a Ping, answered within KeepaliveTimeout): if it answers, the
// new one is refused with AlreadyExists; if not, the old one is ended, as a
// lost worker (its commands return ErrConnectionLost), and the new one
// takes its place. Both cases are logged with both remote addresses.
func (s *Server) accept(h *Hello, remote string, log *slog.Logger) (*WorkerConn, error) {
	name := h.GetName()
	c := &WorkerConn{
		name:          name,
		remote:        remote,
		info:          infoFromPB(h.GetInfo()),
		log:           log,
		interruptWait: s.interruptWait,
		sendq:         make(chan *MasterMessage),
		done:          make(chan struct{}),
		heard:         make(chan struct{}, 1),
		cmds:          make(map[uint64]*pending),
		drain:         make(chan struct{}),
		kept:          keptFromPB(h.GetKept()),
	}
	wait := s.cfg.KeepaliveTimeout
	for {
		s.mu.Lock()
		old := s.conns[name]
		if old == nil {
			s.conns[name] = c
			s.mu.Unlock()
			return c, nil
		}
		s.mu.Unlock()
		if old.probe(wait, s.stopping) {
			log.Warn("worker refused: a worker of that name is connected and answers pings",
				"connected_remote", old.remote)
			return nil, status.Errorf(codes.AlreadyExists,
				"worker %q is already connected (from %s), and it answers", name, old.remote)
		}
		select {
		case <-s.stopping:
			return nil, status.Error(codes.Unavailable, "master shutting down")
		default:
		}
		log.Warn("worker's old connection did not answer a ping: ending it, the new connection replaces it",
			"old_remote", old.remote, "waited", wait)
		old.Close(fmt.Errorf("replaced by a new connection from %s: this one did not answer a ping within %s", remote, wait))
		s.mu.Lock()
		if s.conns[name] == old {
			delete(s.conns, name)
		}
		s.mu.Unlock()
		// Another hello may have taken the name meanwhile: ask again.
	}
}

func (s *Server) detach(c *WorkerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[c.name] == c {
		delete(s.conns, c.name)
	}
}

// WorkerConn is the master's handle on one connected worker. Its methods
// are safe for concurrent use.
type WorkerConn struct {
	name          string
	remote        string // the worker's address, as the master sees it
	info          WorkerInfo
	log           *slog.Logger
	interruptWait time.Duration
	nextID        atomic.Uint64
	sendq         chan *MasterMessage // served by the stream's handler
	done          chan struct{}
	pingSeq       atomic.Uint64
	heard         chan struct{} // gets a token (when empty) for each message received
	probeMu       sync.Mutex    // one probe at a time
	kept          []Kept        // from the hello; see Kept

	mu   sync.Mutex
	err  error               // guarded by mu; why the stream ended
	cmds map[uint64]*pending // guarded by mu; commands in flight; nil once done
	// drain is closed when the worker says it is draining (Draining):
	// from then on it refuses new commands.
	drain chan struct{} // guarded by mu (closing it)
}

// pending is one command in flight on a WorkerConn.
type pending struct {
	events  chan event    // output, then the result, in order
	gone    chan struct{} // closed when Run returned
	refused chan struct{} // closed when the worker drains without running it
}

// event is one output chunk, upload chunk (data set), download read
// request (read set) or (res set) the command's result.
type event struct {
	out  Output
	data []byte
	read int
	res  *Result
}

// Name is the worker's name, from its hello.
func (c *WorkerConn) Name() string { return c.name }

// Info is the worker's description of its host, from its hello.
func (c *WorkerConn) Info() WorkerInfo { return c.info }

// Remote is the worker's network address, as the master sees it.
func (c *WorkerConn) Remote() string { return c.remote }

// probe sends a Ping and reports whether anything (its Pong, or any other
// message) comes from the worker within wait. It returns false at once if
// the connection has ended, and when stop closes.
// Probe pings the worker and reports whether it answers before ctx is
// done (or its deadline, at most a minute, passes).
func (c *WorkerConn) Probe(ctx context.Context) bool {
	wait := time.Minute
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	return c.probe(wait, ctx.Done())
}

func (c *WorkerConn) probe(wait time.Duration, stop <-chan struct{}) bool {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	select {
	case <-c.heard: // what was heard before this probe does not count
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	ping := &MasterMessage{Msg: &MasterMessage_Ping{Ping: &Ping{Seq: c.pingSeq.Add(1)}}}
	select {
	case c.sendq <- ping:
	case <-c.done:
		return false
	case <-stop:
		return false
	case <-t.C:
		return false
	}
	select {
	case <-c.heard:
		return true
	case <-c.done:
		return false
	case <-stop:
		return false
	case <-t.C:
		return false
	}
}

// Done is closed when the stream ends.
func (c *WorkerConn) Done() <-chan struct{} { return c.done }

// Draining is closed when the worker said it is stopping gently (a
// first SIGTERM): it takes no new command, its running ones go on and
// report, then it closes its stream. A worker that predates the Draining
// message never says so; its refusals show only when its stream ends.
func (c *WorkerConn) Draining() <-chan struct{} { return c.drain }

// markDraining records the worker's Draining: every command in flight that
// running does not list was refused (or has ended, and its result is
// already queued), and so is every later one.
func (c *WorkerConn) markDraining(running []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.drain:
		return
	default:
	}
	close(c.drain)
	refused := 0
	for id, p := range c.cmds {
		if !slices.Contains(running, id) {
			close(p.refused)
			refused++
		}
	}
	c.log.Info("worker is draining: no new command; its running ones finish", "running", len(running), "refused", refused)
}

// Close ends the connection, as buildbot's worker kill: the worker sees
// its stream end (and cancels its commands), and Runs in flight return
// ErrConnectionLost. Err then returns reason. Closing twice does nothing.
func (c *WorkerConn) Close(reason error) { c.finish(reason) }

// Err says why the stream ended; nil before Done is closed.
func (c *WorkerConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *WorkerConn) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmds == nil {
		return
	}
	c.err = err
	c.cmds = nil
	close(c.done)
}

// Run starts cmd on the worker and calls out (if not nil) for each output
// chunk, in order and from Run's goroutine, until the command completes; it
// then returns the command's Result. out should return quickly: while it
// runs, the worker's stream is held up (that is the flow control).
//
// Cancelling ctx sends Interrupt and still waits for the worker's Complete
// (the worker kills the command's processes); if none comes within 30s,
// Run returns ctx's error. If ctx is done before the command was sent, Run
// returns ctx's error at once. Run returns ErrConnectionLost if the stream
// ends first. Many Runs may be in flight on one conn concurrently.
func (c *WorkerConn) Run(ctx context.Context, cmd Command, out func(Output)) (Result, error) {
	if err := validateCommand(cmd); err != nil {
		return Result{}, err
	}
	return c.run(ctx, cmd, out, func(id uint64) *MasterMessage {
		sc := commandToPB(id, cmd)
		sc.ResumeKey, sc.Keep = cmd.ResumeKey, durToPB(cmd.Keep)
		sc.Build = cmd.Build
		for _, sec := range cmd.Secrets {
			sc.Secrets = append(sc.Secrets, &SecretValue{Value: sec.Value, Name: sec.Name})
		}
		return &MasterMessage{Msg: &MasterMessage_StartCommand{StartCommand: sc}}
	})
}

// run sends the message first makes for a new command id, then serves the
// command as Run says.
func (c *WorkerConn) run(ctx context.Context, cmd Command, out func(Output), first func(id uint64) *MasterMessage) (Result, error) {
	id := c.nextID.Add(1)
	p := &pending{events: make(chan event, 16), gone: make(chan struct{}), refused: make(chan struct{})}
	c.mu.Lock()
	if c.cmds == nil {
		c.mu.Unlock()
		return Result{}, ErrConnectionLost
	}
	select {
	case <-c.drain:
		c.mu.Unlock()
		return Result{}, ErrWorkerDraining
	default:
	}
	c.cmds[id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.cmds, id)
		c.mu.Unlock()
		close(p.gone)
	}()
	log := c.log.With("command", id, "builder", cmd.Builder)

	start := first(id)
	select {
	case c.sendq <- start:
	case <-c.done:
		return Result{}, ErrConnectionLost
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}

	// transferErr is why the master's end of a transfer failed; the
	// command is then interrupted and its Result carries it.
	var transferErr error
	interrupted := false
	ctxDone := ctx.Done()
	var giveUp <-chan time.Time
	interrupt := func(why string) bool {
		interrupted = true
		log.Debug("interrupting command", "why", why)
		in := &MasterMessage{Msg: &MasterMessage_Interrupt{Interrupt: &Interrupt{CommandId: id, Why: why}}}
		select {
		case c.sendq <- in:
		case <-c.done:
			return false
		}
		t := time.NewTimer(c.interruptWait)
		giveUp = t.C
		return true
	}
	// handle takes one event; it returns the result when the command ended.
	handle := func(ev event) *Result {
		switch {
		case ev.res != nil:
			if transferErr != nil {
				ev.res.ExitCode = -1
				ev.res.Err = transferErr.Error()
			}
			return ev.res
		case ev.data != nil:
			if transferErr != nil {
				return nil
			}
			if cmd.Upload == nil || cmd.Upload.Sink == nil {
				transferErr = errors.New("master: upload data for a command that is not an upload")
			} else if _, err := cmd.Upload.Sink.Write(ev.data); err != nil {
				transferErr = fmt.Errorf("master: %w", err)
			}
			if transferErr != nil && !interrupted {
				interrupt(transferErr.Error())
			}
		case ev.read > 0:
			c.answerRead(ctx, id, cmd.Download, ev.read)
		default:
			if out != nil {
				out(ev.out)
			}
		}
		return nil
	}
	for {
		select {
		case ev := <-p.events:
			if r := handle(ev); r != nil {
				return *r, nil
			}
		case <-c.done:
			// Events delivered before the end still count.
			for {
				select {
				case ev := <-p.events:
					if r := handle(ev); r != nil {
						return *r, nil
					}
				default:
					return Result{}, ErrConnectionLost
				}
			}
		case <-p.refused:
			// A command that ended before the worker drained has its
			// result queued already (receive queued it first).
			for {
				select {
				case ev := <-p.events:
					if r := handle(ev); r != nil {
						return *r, nil
					}
				default:
					return Result{}, ErrWorkerDraining
				}
			}
		case <-ctxDone:
			ctxDone = nil
			if !interrupted && !interrupt(context.Cause(ctx).Error()) {
				return Result{}, ErrConnectionLost
			}
		case <-giveUp:
			log.Warn("worker did not complete interrupted command", "wait", c.interruptWait)
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			return Result{ExitCode: -1, Err: transferErr.Error()}, nil
		}
	}
}

// answerRead sends the worker the next chunk of a download, at most n
// bytes (capped at MaxChunk), read from d.Source.
func (c *WorkerConn) answerRead(ctx context.Context, id uint64, d *DownloadCommand, n int) {
	chunk := &DownloadChunk{CommandId: id}
	if d == nil || d.Source == nil {
		chunk.Error = "master: read for a command that is not a download"
	} else {
		buf := make([]byte, min(n, MaxChunk))
		k, err := io.ReadFull(d.Source, buf)
		chunk.Data = buf[:k]
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			chunk.Eof = true
		case err != nil:
			chunk.Error = "master: " + err.Error()
		}
	}
	select {
	case c.sendq <- &MasterMessage{Msg: &MasterMessage_DownloadChunk{DownloadChunk: chunk}}:
	case <-c.done:
	case <-ctx.Done():
	}
}

// receive reads the worker's messages after its hello and hands them to
// the Runs in flight, until the stream ends.
func (c *WorkerConn) receive(stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		select {
		case c.heard <- struct{}{}:
		default:
		}
		var id uint64
		var ev event
		switch msg := m.GetMsg().(type) {
		case *WorkerMessage_Pong:
			continue
		case *WorkerMessage_Draining:
			c.markDraining(msg.Draining.GetRunning())
			continue
		case *WorkerMessage_Output:
			id = msg.Output.GetCommandId()
			ev.out = Output{Stream: streamFromPB(msg.Output.GetStream()), Log: msg.Output.GetLogName(), Data: msg.Output.GetData()}
		case *WorkerMessage_UploadChunk:
			id = msg.UploadChunk.GetCommandId()
			ev.data = msg.UploadChunk.GetData()
			if ev.data == nil {
				ev.data = []byte{}
			}
		case *WorkerMessage_Read:
			id = msg.Read.GetCommandId()
			ev.read = max(1, int(msg.Read.GetLength()))
		case *WorkerMessage_Complete:
			id = msg.Complete.GetCommandId()
			r := resultFromPB(msg.Complete)
			ev.res = &r
		default:
			c.log.Warn("unexpected message from worker", "type", fmt.Sprintf("%T", msg))
			continue
		}
		c.mu.Lock()
		p := c.cmds[id]
		c.mu.Unlock()
		if p == nil {
			c.log.Debug("message for unknown command", "command", id)
			continue
		}
		select {
		case p.events <- ev:
		case <-p.gone:
		case <-c.done:
			return nil
		}
	}
}

// Streams returns how many workers have a stream open and attached now.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
