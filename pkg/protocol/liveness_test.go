package protocol

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startMasterWith is startMaster with the server's timings set.
func startMasterWith(t *testing.T, keepalive, keepaliveTimeout, hello time.Duration) *master {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &master{
		addr:    l.Addr().String(),
		lis:     &killListener{Listener: l},
		attach:  make(chan *WorkerConn, 10),
		log:     &syncBuffer{},
		stopped: make(chan struct{}),
	}
	s := NewServer(ServerConfig{
		Attach:           func(c *WorkerConn) { m.attach <- c },
		Logger:           slog.New(slog.NewTextHandler(m.log, nil)),
		MasterVersion:    "test",
		KeepaliveTime:    keepalive,
		KeepaliveTimeout: keepaliveTimeout,
		HelloTimeout:     hello,
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(m.stopped)
		if err := s.Serve(ctx, m.lis); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	m.stop = func() { cancel(); <-m.stopped }
	t.Cleanup(m.stop)
	return m
}

// frozenWorker says hello and then reads nothing and answers nothing,
// as a worker whose process is stopped while its TCP connection stays up
// (gRPC's own keepalive still answers on the connection).
func frozenWorker(t *testing.T, addr, name string) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	stream, err := NewMasterClient(cc).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := loginStream(stream, &Hello{ProtocolVersion: Version, Name: name}, "pw"); err != nil || m.GetWelcome() == nil {
		t.Fatalf("frozen worker's login: %v, %v", m, err)
	}
}

// waitLog waits until the master's log has every one of want.
func waitLog(t *testing.T, m *master, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := m.log.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(log, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("master log lacks %q:\n%s", missing, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDuplicateAliveRefused: a second worker under a connected name is
// refused while the first answers, and the log names both addresses.
func TestDuplicateAliveRefused(t *testing.T) {
	t.Parallel()
	m := startMasterWith(t, 0, 0, 0)
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	w2 := startWorker(t, m.addr, "w1", "pw")
	err := <-w2.attempts
	if err == nil || !strings.Contains(err.Error(), `worker "w1" is already connected (from `+c.Remote()+`)`) {
		t.Fatalf("second worker's attempt = %v, want a refusal naming the first one's address %s", err, c.Remote())
	}
	waitLog(t, m, "worker refused: a worker of that name is connected and answers pings", "connected_remote="+c.Remote(), "remote=127.0.0.1:")
	// The first one is untouched.
	if res, out, err := collect(t, t.Context(), c, shell("echo", "still")); err != nil || res.ExitCode != 0 || len(out) != 1 {
		t.Errorf("Run on the first worker = %+v, %v, %v", res, out, err)
	}
}

// TestDuplicateDeadReplaced: a second worker under the name of one that
// answers nothing replaces it; the old one's command ends with
// ErrConnectionLost, as for a lost worker.
func TestDuplicateDeadReplaced(t *testing.T) {
	t.Parallel()
	const wait = 300 * time.Millisecond
	m := startMasterWith(t, 0, wait, 0)
	frozenWorker(t, m.addr, "w1")
	old := waitAttach(t, m)
	lost := make(chan error, 1)
	go func() {
		_, err := old.Run(t.Context(), shell("block"), nil)
		lost <- err
	}()
	start := time.Now()
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	if took := time.Since(start); took < wait {
		t.Errorf("replaced after %v, before the ping's %v were up", took, wait)
	}
	if err := <-lost; !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Run on the replaced connection = %v, want ErrConnectionLost", err)
	}
	if err := old.Err(); err == nil || !strings.Contains(err.Error(), "replaced by a new connection from "+c.Remote()) {
		t.Errorf("old connection's Err() = %v", err)
	}
	waitLog(t, m, "did not answer a ping: ending it, the new connection replaces it", "old_remote="+old.Remote(), "remote="+c.Remote())
	if res, out, err := collect(t, t.Context(), c, shell("echo", "new")); err != nil || res.ExitCode != 0 || len(out) != 1 {
		t.Errorf("Run on the new worker = %+v, %v, %v", res, out, err)
	}
}

// fakeMaster is a remote master speaking the real wire protocol, scripted
// by connect.
type fakeMaster struct {
	UnimplementedMasterServer
	connects atomic.Int32
	connect  func(n int32, stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error
}

func (f *fakeMaster) Connect(stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
	return f.connect(f.connects.Add(1), stream)
}

func serveFake(t *testing.T, f *fakeMaster) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	RegisterMasterServer(gs, f)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(l) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return l.Addr().String()
}

// TestHeartbeat: the worker answers the master's Ping with a Pong, and
// takes a master that goes silent (its TCP connection still up) for gone
// within the announced heartbeat interval + timeout, then reconnects.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	const interval, timeout = 200 * time.Millisecond, 300 * time.Millisecond
	welcomed := make(chan time.Time, 1)
	pong := make(chan uint64, 1)
	again := make(chan time.Time, 1)
	f := &fakeMaster{connect: func(n int32, stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
		if _, err := stream.Recv(); err != nil {
			return err
		}
		if n > 1 {
			again <- time.Now()
			<-stream.Context().Done()
			return nil
		}
		if err := stream.Send(&MasterMessage{Msg: &MasterMessage_Welcome{Welcome: &Welcome{
			ProtocolVersion: Version, HeartbeatInterval: durToPB(interval), HeartbeatTimeout: durToPB(timeout),
		}}}); err != nil {
			return err
		}
		if err := stream.Send(&MasterMessage{Msg: &MasterMessage_Ping{Ping: &Ping{Seq: 7}}}); err != nil {
			return err
		}
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		pong <- m.GetPong().GetSeq()
		welcomed <- time.Now()
		// Then silence, the stream left open.
		<-stream.Context().Done()
		return nil
	}}
	addr := serveFake(t, f)
	log := &syncBuffer{}
	cl := NewClient(ClientConfig{Master: addr, Name: "w", Password: "pw", Executor: newTestExecutor(),
		Logger: slog.New(slog.NewTextHandler(log, nil)), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if seq := <-pong; seq != 7 {
		t.Errorf("Pong seq = %d, want 7", seq)
	}
	silentFrom := <-welcomed
	var back time.Time
	select {
	case back = <-again:
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker did not reconnect to a silent master; its log:\n%s", log)
	}
	// The worker's clock starts at the Ping, a little before silentFrom
	// (the Pong's trip): half the bound is a safe floor.
	bound := interval + timeout
	if took := back.Sub(silentFrom); took < bound/2 || took > bound+5*time.Second {
		t.Errorf("reconnected %v after the master went silent; want about %v, at most %v", took, bound, bound+5*time.Second)
	}
	if !strings.Contains(log.String(), "nothing from the master for 500ms") {
		t.Errorf("worker log lacks why it left:\n%s", log)
	}
}

// TestOldMasterVersion: a master of another protocol version refuses the
// worker, naming both versions; the worker logs it and stops trying
// instead of spinning.
func TestOldMasterVersion(t *testing.T) {
	t.Parallel()
	f := &fakeMaster{connect: func(n int32, stream grpc.BidiStreamingServer[WorkerMessage, MasterMessage]) error {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		return status.Errorf(codes.FailedPrecondition, "worker %q speaks protocol version %d, master speaks version %d",
			m.GetHello().GetName(), m.GetHello().GetProtocolVersion(), Version+1)
	}}
	addr := serveFake(t, f)
	log := &syncBuffer{}
	cl := NewClient(ClientConfig{Master: addr, Name: "w", Password: "pw", Executor: newTestExecutor(),
		Logger: slog.New(slog.NewTextHandler(log, nil)), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	err := cl.Run(t.Context())
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("Run = %v, want ErrVersionMismatch", err)
	}
	both := []string{fmt.Sprintf("protocol version %d", Version), fmt.Sprintf("version %d", Version+1)}
	for _, s := range both {
		if !strings.Contains(err.Error(), s) || !strings.Contains(log.String(), s) {
			t.Errorf("error %q or log lacks %q:\n%s", err, s, log)
		}
	}
	if !strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("worker log has no error line:\n%s", log)
	}
	if n := f.connects.Load(); n != 1 {
		t.Errorf("the worker tried %d times, want 1", n)
	}
}

// TestBadInputOnWorkerPort sends what a worker never sends to the worker
// port. Each connection is dropped within a bound and logged with why;
// the master goes on serving its worker; no goroutine is left behind. Not
// parallel: it counts the process's goroutines.
func TestBadInputOnWorkerPort(t *testing.T) {
	const hello = 500 * time.Millisecond
	m := startMasterWith(t, time.Second, time.Second, hello)
	startWorker(t, m.addr, "good", "pw")
	good := waitAttach(t, m)
	if _, _, err := collect(t, t.Context(), good, shell("echo", "warm")); err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	// The bound: the handshake (hello) or keepalive (1s + 1s) ends every
	// case; a loaded machine gets generous slack.
	bound := 2*time.Second + 10*time.Second

	// dropped waits until the master closes conn, and says how long it took.
	dropped := func(t *testing.T, conn net.Conn) time.Duration {
		t.Helper()
		start := time.Now()
		conn.SetReadDeadline(start.Add(bound))
		_, err := io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v", bound)
		}
		return time.Since(start)
	}
	raw := func(t *testing.T, data []byte) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write(data); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	settings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0} // an empty SETTINGS frame
	grpcStream := func(t *testing.T) grpc.BidiStreamingClient[WorkerMessage, MasterMessage] {
		t.Helper()
		cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		stream, err := NewMasterClient(cc).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return stream
	}

	t.Run("garbage", func(t *testing.T) {
		junk := make([]byte, 4096)
		rand.Read(junk)
		junk[0] = 'X' // not the preface's first byte
		dropped(t, raw(t, junk))
		waitLog(t, m, "not a gRPC client")
	})
	t.Run("half frame", func(t *testing.T) {
		conn := raw(t, append([]byte(http2Preface), settings[:5]...))
		if took := dropped(t, conn); took < hello/2 {
			t.Errorf("dropped after %v, before the handshake's %v", took, hello)
		}
		waitLog(t, m, "no complete HTTP/2 handshake within 500ms")
	})
	t.Run("http2 without a stream", func(t *testing.T) {
		dropped(t, raw(t, append([]byte(http2Preface), settings...)))
		waitLog(t, m, "no message on it")
	})
	t.Run("stream without hello", func(t *testing.T) {
		stream := grpcStream(t)
		_, err := stream.Recv()
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no hello from worker within 500ms") {
			t.Errorf("Recv = %v, want DeadlineExceeded: no hello", err)
		}
		waitLog(t, m, "worker port: stream dropped: no hello")
	})
	t.Run("undecodable message", func(t *testing.T) {
		cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		stream, err := cc.NewStream(t.Context(), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
			Master_Connect_FullMethodName, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}); err != nil {
			t.Fatal(err)
		}
		var reply []byte
		if err := stream.RecvMsg(&reply); status.Code(err) != codes.Internal {
			t.Errorf("RecvMsg = %v, want Internal (cannot unmarshal)", err)
		}
		waitLog(t, m, "worker port: stream dropped before hello", "unmarshal")
	})
	t.Run("old protocol version", func(t *testing.T) {
		stream := grpcStream(t)
		if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Hello{Hello: &Hello{ProtocolVersion: 0, Name: "old"}}}); err != nil {
			t.Fatal(err)
		}
		_, err := stream.Recv()
		want := fmt.Sprintf(`worker "old" speaks protocol version 0, master speaks version %d`, Version)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
			t.Errorf("Recv = %v, want FailedPrecondition: %s", err, want)
		}
		waitLog(t, m, "worker refused: protocol version mismatch", "worker_protocol=0")
	})

	// The good worker was served all along.
	if res, out, err := collect(t, t.Context(), good, shell("echo", "still", "here")); err != nil || res.ExitCode != 0 || len(out) != 1 {
		t.Errorf("Run on the good worker = %+v, %v, %v", res, out, err)
	}
	select {
	case <-good.Done():
		t.Errorf("the good worker's connection ended: %v", good.Err())
	default:
	}
	// Nothing is left of the bad connections once their clients are gone.
	deadline := time.Now().Add(bound)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the bad input:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// blackhole relays TCP connections to target until cut, when it stops
// moving bytes either way but keeps every connection open, as a network
// cut without FIN or RST does.
type blackhole struct {
	net.Listener
	gate  sync.RWMutex // write-locked while cut; relays pass bytes under a read lock
	mu    sync.Mutex
	isCut bool // guarded by mu
}

// cut stops the bytes; uncut lets them go again.
func (b *blackhole) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.isCut {
		b.gate.Lock()
		b.isCut = true
	}
}

func (b *blackhole) uncut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isCut {
		b.gate.Unlock()
		b.isCut = false
	}
}

func startBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{Listener: l}
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			for _, p := range [][2]net.Conn{{c, up}, {up, c}} {
				wg.Go(func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := p[0].Read(buf)
						if err != nil {
							p[1].Close()
							return
						}
						b.gate.RLock() // while cut, the bytes wait here
						b.gate.RUnlock()
						if _, err := p[1].Write(buf[:n]); err != nil {
							p[0].Close()
							return
						}
					}
				})
			}
		}
	})
	t.Cleanup(func() {
		b.uncut()
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return b
}

// TestSilentCut: with the network between them cut silently, the master
// finds its worker gone within keepalive interval + timeout (its Runs
// return ErrConnectionLost), and the worker, once the network is back,
// reconnects by itself.
func TestSilentCut(t *testing.T) {
	t.Parallel()
	const interval, timeout = time.Second, time.Second
	m := startMasterWith(t, interval, timeout, 0)
	hole := startBlackhole(t, m.addr)
	startWorker(t, hole.Addr().String(), "w1", "pw")
	c := waitAttach(t, m)
	lost := make(chan error, 1)
	go func() {
		_, err := c.Run(t.Context(), shell("block"), nil)
		lost <- err
	}()
	hole.cut()
	cut := time.Now()
	select {
	case <-c.Done():
	case <-time.After(interval + timeout + 10*time.Second):
		t.Fatalf("the master did not find the worker gone within %v + 10s slack", interval+timeout)
	}
	took := time.Since(cut)
	t.Logf("found gone after %v (bound %v)", took.Round(time.Millisecond), interval+timeout)
	if took < timeout {
		t.Errorf("found gone after %v, sooner than a keepalive timeout: was it really silent?", took)
	}
	if err := <-lost; !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Run = %v, want ErrConnectionLost", err)
	}
	hole.uncut()
	c2 := waitAttach(t, m)
	if res, out, err := collect(t, t.Context(), c2, shell("echo", "back")); err != nil || res.ExitCode != 0 || len(out) != 1 {
		t.Errorf("Run after the cut = %+v, %v, %v", res, out, err)
	}
}

// rawCodec sends and receives bytes as they are, to put what is not a
// protobuf message on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
