package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// testExecutor is the worker side's test double: it understands a few
// argv commands instead of running programs.
//
//	echo A B C   outputs A, B, C on stdout as separate chunks, exits 0
//	stderr A     outputs A on stderr
//	exit N       exits N
//	big N        outputs N bytes of stdout in 1000-byte chunks
//	block        reports on started, then waits for ctx; Interrupted
type testExecutor struct {
	started chan string  // gets the builder of each "block" command
	sent    atomic.Int64 // bytes written to upload sinks
}

func newTestExecutor() *testExecutor { return &testExecutor{started: make(chan string, 100)} }

func (e *testExecutor) Run(ctx context.Context, cmd Command, out func(Output)) Result {
	if cmd.Git != nil {
		return runTestGit(cmd.Git, out)
	}
	if cmd.Upload != nil || cmd.Download != nil {
		return runTestTransfer(e, cmd)
	}
	argv := cmd.Shell.Argv
	switch argv[0] {
	case "echo":
		for _, a := range argv[1:] {
			out(Output{Stream: Stdout, Data: []byte(a)})
		}
	case "stderr":
		out(Output{Stream: Stderr, Data: []byte(argv[1])})
	case "exit":
		n, _ := strconv.Atoi(argv[1])
		return Result{ExitCode: n, Elapsed: time.Millisecond}
	case "big":
		n, _ := strconv.Atoi(argv[1])
		chunk := bytes.Repeat([]byte("x"), 1000)
		for n > 0 {
			k := min(n, len(chunk))
			out(Output{Stream: Stdout, Data: chunk[:k]})
			n -= k
		}
	case "block":
		e.started <- cmd.Builder
		<-ctx.Done()
		out(Output{Stream: Header, Data: []byte("killed\n")})
		return Result{ExitCode: -1, Signal: "KILL", Interrupted: true}
	default:
		return Result{ExitCode: -1, Err: "unknown command " + argv[0]}
	}
	return Result{}
}

// killListener lets a test cut every connection it accepted.
type killListener struct {
	net.Listener
	accepted atomic.Int64 // connections accepted
	mu       sync.Mutex
	conns    []net.Conn
}

func (l *killListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *killListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type master struct {
	addr    string
	lis     *killListener
	attach  chan *WorkerConn
	log     *syncBuffer
	stop    func() // stops the server and waits for Serve
	stopped chan struct{}
}

// startMaster serves on addr ("127.0.0.1:0" for any port) with the
// password "pw" for every worker.
func startMaster(t *testing.T, addr string) *master {
	t.Helper()
	return startMasterPassword(t, addr, "pw")
}

// startMasterPassword is startMaster with password for every worker.
func startMasterPassword(t *testing.T, addr, password string) *master {
	t.Helper()
	l, err := net.Listen("tcp", addr)
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
		Password:      func(string) (string, bool) { return password, true },
		Attach:        func(c *WorkerConn) { m.attach <- c },
		Logger:        slog.New(slog.NewTextHandler(m.log, nil)),
		MasterVersion: "test",
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

type worker struct {
	exec     *testExecutor
	attempts chan error
	done     chan error // Run's result
	stop     func()
}

func startWorker(t *testing.T, addr, name, password string) *worker {
	t.Helper()
	w := &worker{exec: newTestExecutor(), attempts: make(chan error, 100), done: make(chan error, 1)}
	c := NewClient(ClientConfig{
		Master:     addr,
		Name:       name,
		Password:   password,
		Info:       WorkerInfo{Admin: "admin <a@b>", Host: "test host", OS: "plan9", Arch: "mips", Version: "v0", Basedir: "/b", NumCPU: 3, Extra: map[string]string{"k": "v"}},
		Executor:   w.exec,
		MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		OnAttempt: func(err error) {
			select {
			case w.attempts <- err:
			default:
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	w.stop = func() {
		once.Do(func() { cancel(); runErr = <-w.done })
		if runErr != nil {
			t.Errorf("Client.Run: %v", runErr)
		}
	}
	t.Cleanup(w.stop)
	return w
}

func waitAttach(t *testing.T, m *master) *WorkerConn {
	t.Helper()
	select {
	case c := <-m.attach:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no worker attached")
		return nil
	}
}

func shell(argv ...string) Command { return Command{Builder: "b", Shell: &ShellCommand{Argv: argv}} }

// collect runs cmd and returns its output as "stream:data" items.
func collect(t *testing.T, ctx context.Context, c *WorkerConn, cmd Command) (Result, []string, error) {
	var got []string
	res, err := c.Run(ctx, cmd, func(o Output) { got = append(got, o.Stream.String()+":"+string(o.Data)) })
	return res, got, err
}

func TestHelloAttach(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	if c.Name() != "w1" {
		t.Errorf("Name() = %q, want w1", c.Name())
	}
	want := WorkerInfo{Admin: "admin <a@b>", Host: "test host", OS: "plan9", Arch: "mips", Version: "v0", Basedir: "/b", NumCPU: 3, Extra: map[string]string{"k": "v"}}
	if diff := cmp.Diff(want, c.Info()); diff != "" {
		t.Errorf("Info() (-want +got):\n%s", diff)
	}
	select {
	case <-c.Done():
		t.Fatal("Done closed while connected")
	default:
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	w := NewClient(ClientConfig{Master: m.addr, Name: "w1", Password: "nope", Executor: newTestExecutor(), MinBackoff: time.Millisecond})
	err := w.Run(t.Context())
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Run = %v, want ErrAuthFailed", err)
	}
	if !strings.Contains(err.Error(), `worker "w1": wrong name or password`) {
		t.Errorf("Run = %v, want the master's message", err)
	}
	m.stop() // the log is complete
	log := m.log.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "worker=w1") || !strings.Contains(log, "remote=127.0.0.1:") {
		t.Errorf("master log lacks a warning with worker and remote address:\n%s", log)
	}
}

// TestRefusals speaks the wire protocol directly, as another worker would.
func TestRefusals(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "taken", "pw")
	waitAttach(t, m)
	tests := []struct {
		name     string
		hello    *Hello
		password string
		code     codes.Code
		contains []string
	}{
		{"version", &Hello{ProtocolVersion: Version + 1, Name: "w"}, "pw", codes.FailedPrecondition,
			[]string{fmt.Sprintf("version %d", Version+1), fmt.Sprintf("version %d", Version)}},
		{"password", &Hello{ProtocolVersion: Version, Name: "w"}, "x", codes.Unauthenticated,
			[]string{`worker "w": wrong name or password`}},
		{"taken", &Hello{ProtocolVersion: Version, Name: "taken"}, "pw", codes.AlreadyExists,
			[]string{`worker "taken" is already connected`}},
		{"no hello", nil, "", codes.InvalidArgument, []string{"hello"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			stream, err := NewMasterClient(cc).Connect(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tt.hello == nil {
				if err := stream.Send(&WorkerMessage{Msg: &WorkerMessage_Output{Output: &OutputChunk{}}}); err != nil {
					t.Fatal(err)
				}
				_, err = stream.Recv()
			} else {
				_, err = loginStream(stream, tt.hello, tt.password)
			}
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.code)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if tt.code == codes.FailedPrecondition && !errors.Is(classify(err), ErrVersionMismatch) {
				t.Errorf("classify(%v) is not ErrVersionMismatch", err)
			}
		})
	}
}

func TestRunOutput(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	tests := []struct {
		name string
		cmd  Command
		res  Result
		out  []string
	}{
		{"echo", shell("echo", "a", "b", "c"), Result{}, []string{"stdout:abc"}},
		{"stderr", shell("stderr", "oops"), Result{}, []string{"stderr:oops"}},
		{"exit", shell("exit", "3"), Result{ExitCode: 3, Elapsed: time.Millisecond}, nil},
		{"cannot run", shell("nosuch"), Result{ExitCode: -1, Err: "unknown command nosuch"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, out, err := collect(t, t.Context(), c, tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.res, res); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.out, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBigOutputInOrder(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	const n = 3<<20 + 17
	var total, chunks int
	pooled := buffers.batches.Load()
	res, err := c.Run(t.Context(), shell("big", strconv.Itoa(n)), func(o Output) {
		if len(o.Data) > batchSize {
			t.Errorf("chunk of %d bytes, want at most %d", len(o.Data), batchSize)
		}
		total += len(o.Data)
		chunks++
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if total != n {
		t.Errorf("got %d bytes, want %d", total, n)
	}
	if chunks < n/batchSize {
		t.Errorf("got %d chunks, want at least %d", chunks, n/batchSize)
	}
	// Each batch took a buffer of the pool twice: the worker marshalling
	// it, the master receiving it (gRPC's own pool would clear each one).
	if got := buffers.batches.Load() - pooled; got < 2*int64(n/batchSize) {
		t.Errorf("%d batch buffers taken from the pool for %d batches, want at least %d", got, n/batchSize, 2*(n/batchSize))
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			args := []string{"echo"}
			var want strings.Builder
			for j := range 50 {
				s := fmt.Sprintf("%d.%d ", i, j)
				args = append(args, s)
				want.WriteString(s)
			}
			var got strings.Builder
			res, err := c.Run(t.Context(), shell(args...), func(o Output) { got.Write(o.Data) })
			if err != nil || res.ExitCode != 0 {
				t.Errorf("Run %d = %+v, %v", i, res, err)
			}
			if got.String() != want.String() {
				t.Errorf("Run %d output = %q, want %q", i, got.String(), want.String())
			}
		})
	}
	wg.Wait()
}

func TestInterrupt(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	w := startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-w.exec.started; cancel() }()
	res, out, err := collect(t, ctx, c, shell("block"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{ExitCode: -1, Signal: "KILL", Interrupted: true}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"header:killed\n"}, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestInterruptNoComplete(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	// A worker that never answers: it reads commands and ignores them.
	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := NewMasterClient(cc).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := loginStream(stream, &Hello{ProtocolVersion: Version, Name: "mute"}, "pw"); err != nil || m.GetWelcome() == nil {
		t.Fatalf("login: %v, %v", m, err)
	}
	c := waitAttach(t, m)
	c.interruptWait = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			if msg.GetStartCommand() != nil {
				cancel()
			}
		}
	}()
	if _, err := c.Run(ctx, shell("block"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestConnectionLostMidCommand(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	w := startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	go func() { <-w.exec.started; m.lis.cut() }()
	if _, err := c.Run(t.Context(), shell("block"), nil); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Run = %v, want ErrConnectionLost", err)
	}
	<-c.Done()
	if c.Err() == nil {
		t.Error("Err() = nil after Done")
	}
	if _, err := c.Run(t.Context(), shell("echo"), nil); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Run on a dead conn = %v, want ErrConnectionLost", err)
	}
	// The worker killed the command and comes back.
	c2 := waitAttach(t, m)
	if res, out, err := collect(t, t.Context(), c2, shell("echo", "again")); err != nil || res.ExitCode != 0 || len(out) != 1 {
		t.Errorf("Run after reconnect = %+v, %v, %v", res, out, err)
	}
}

func TestMasterRestart(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	m.stop()
	<-c.Done()
	m2 := startMaster(t, m.addr)
	c2 := waitAttach(t, m2)
	res, out, err := collect(t, t.Context(), c2, shell("echo", "back"))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if diff := cmp.Diff([]string{"stdout:back"}, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestWorkerShutdown: a worker that stops kills its commands and still
// reports them.
func TestWorkerShutdown(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	w := startWorker(t, m.addr, "w1", "pw")
	c := waitAttach(t, m)
	go func() { <-w.exec.started; w.stop() }()
	res, err := c.Run(t.Context(), shell("block"), nil)
	if err != nil || !res.Interrupted {
		t.Errorf("Run = %+v, %v; want an interrupted result", res, err)
	}
	<-c.Done()
}

func TestAlreadyConnectedRetries(t *testing.T) {
	t.Parallel()
	m := startMaster(t, "127.0.0.1:0")
	startWorker(t, m.addr, "w1", "pw")
	waitAttach(t, m)
	w2 := startWorker(t, m.addr, "w1", "pw")
	err := <-w2.attempts
	if status.Code(errors.Unwrap(errors.Unwrap(err))) != codes.AlreadyExists && !strings.Contains(err.Error(), "already connected") {
		t.Errorf("second worker's attempt = %v, want AlreadyExists", err)
	}
	if err := <-w2.attempts; err == nil {
		t.Error("second worker was accepted")
	}
}
