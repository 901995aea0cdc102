package pb

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/bbworker"
)

// logBuffer is a slog destination tests read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// master is a Server on a loopback port, handing out the Conns it logs in.
type master struct {
	srv   *Server
	addr  string
	conns chan bbworker.Conn
	logs  *logBuffer
}

func newMaster(t *testing.T, passwords map[string]string, opts ...func(*Server)) *master {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &master{addr: ln.Addr().String(), conns: make(chan bbworker.Conn, 8), logs: &logBuffer{}}
	m.srv = &Server{
		Password: func(name string) (string, bool) {
			p, ok := passwords[name]
			return p, ok
		},
		Attach: func(c bbworker.Conn) {
			m.conns <- c
			<-c.Done()
		},
		Logger: slog.New(slog.NewTextHandler(m.logs, nil)),
	}
	for _, o := range opts {
		o(m.srv)
	}
	served := make(chan error, 1)
	go func() { served <- m.srv.Serve(ln) }()
	t.Cleanup(func() {
		m.srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return m
}

// conn waits for w to log in.
func (m *master) conn(t *testing.T, w *worker) bbworker.Conn {
	t.Helper()
	select {
	case c := <-m.conns:
		return c
	case <-w.done:
		t.Fatalf("the worker stopped; log:\n%s", m.logs)
		return nil
	case <-time.After(2 * time.Minute):
		t.Fatalf("no worker logged in; log:\n%s", m.logs)
		return nil
	}
}

// worker is a real buildbot-worker process.
type worker struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startWorker(t *testing.T, addr, name, password string, flags ...string) *worker {
	t.Helper()
	bin := testdeb.Need(t, "buildbot-worker", "buildbot-worker")
	dir := filepath.Join(t.TempDir(), "worker")
	args := append([]string{"create-worker", "-q", "--maxdelay=2"}, flags...)
	if out, err := exec.Command(bin, append(args, dir, addr, name, password)...).CombinedOutput(); err != nil {
		t.Fatalf("create-worker: %v\n%s", err, out)
	}
	w := &worker{dir: dir, done: make(chan struct{})}
	w.cmd = exec.Command(bin, "start", "--nodaemon", dir)
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.kill()
		<-w.done
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "twistd.log"))
			t.Logf("%s's twistd.log:\n%s", name, log)
		}
	})
	return w
}

// kill SIGKILLs the worker and its process group.
func (w *worker) kill() {
	syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
}

func (w *worker) log() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "twistd.log"))
	return string(b)
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sink collects a command's updates.
type sink struct {
	mu      sync.Mutex
	updates []bbworker.Update
	failure error
	done    chan struct{}
}

func newSink() *sink { return &sink{done: make(chan struct{})} }

func (s *sink) Update(u []bbworker.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, u...)
}

func (s *sink) Complete(failure error) {
	s.mu.Lock()
	s.failure = failure
	s.mu.Unlock()
	close(s.done)
}

func (s *sink) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("command did not complete")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// text joins the values of key's updates; rc is the last "rc".
func (s *sink) text(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, u := range s.updates {
		if u.Key == key {
			b.WriteString(u.Value.(string))
		}
	}
	return b.String()
}

func (s *sink) rc() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rc int64
	var ok bool
	for _, u := range s.updates {
		if u.Key == "rc" {
			rc, ok = u.Value.(int64)
		}
	}
	return rc, ok
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// attached logs a worker in and sets up builder "b" in directory "bdir".
func attached(t *testing.T) (*master, *worker, bbworker.Conn) {
	t.Helper()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	w := startWorker(t, m.addr, "w1", "sekrit")
	c := m.conn(t, w)
	if _, err := c.SetBuilderList(ctxT(t), []bbworker.Builder{{Name: "b", Dir: "bdir"}}); err != nil {
		t.Fatal(err)
	}
	return m, w, c
}

func shell(t *testing.T, c bbworker.Conn, id string, command any) *sink {
	t.Helper()
	s := newSink()
	err := c.StartCommand(ctxT(t), s, "b", id, "shell", map[string]any{
		"workdir": "build", "command": command, "env": map[string]any{"GBB": "pb"},
		"want_stdout": true, "want_stderr": true, "logfiles": map[string]any{},
		"timeout": int64(600), "usePTY": false, "logEnviron": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoginAndWorkerInfo(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	w := startWorker(t, m.addr, "w1", "sekrit", "--keepalive=1")
	c := m.conn(t, w)
	if c.Name() != "w1" || c.Protocol() != "pb" || !strings.HasPrefix(c.Remote(), "127.0.0.1:") {
		t.Errorf("conn: name %q protocol %q remote %q", c.Name(), c.Protocol(), c.Remote())
	}
	ctx := ctxT(t)
	if err := c.Print(ctx, "attached"); err != nil {
		t.Fatal(err)
	}
	if err := c.Keepalive(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the worker to log the master's message", func() bool {
		return strings.Contains(w.log(), "message from master: attached")
	})
	info, err := c.GetWorkerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := info["version"].(string); !strings.HasPrefix(v, "3.7.0") {
		t.Errorf("version %q, want 3.7.0", info["version"])
	}
	for _, k := range []string{"admin", "host", "basedir"} {
		if s, _ := info[k].(string); s == "" {
			t.Errorf("info has no %s: %v", k, info)
		}
	}
	cmds, _ := info["worker_commands"].(map[string]any)
	for _, name := range []string{"shell", "uploadFile", "downloadFile", "mkdir", "rmdir"} {
		if _, ok := cmds[name].(string); !ok {
			t.Errorf("worker_commands lacks %s: %v", name, cmds)
		}
	}
	names, err := c.SetBuilderList(ctx, []bbworker.Builder{{Name: "b1", Dir: "d1"}, {Name: "b2", Dir: "d2"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "b1,b2" {
		t.Errorf("SetBuilderList: %v", names)
	}
	for _, d := range []string{"d1", "d2"} {
		if fi, err := os.Stat(filepath.Join(w.dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("builder dir %s: %v", d, err)
		}
	}
	// The worker's own keepalives (perspective_keepalive) are answered.
	waitFor(t, time.Minute, "the worker's keepalives answered", func() bool {
		return strings.Count(w.log(), "Master replied to keepalive") >= 2
	})
	if l := w.log(); strings.Contains(l, "error sending keepalive") {
		t.Errorf("keepalive failed:\n%s", l)
	}
	// The master shuts the worker down (remote_shutdown): it goes.
	if err := c.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(time.Minute):
		t.Fatal("Shutdown left the connection up")
	}
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		t.Fatal("Shutdown left the worker running")
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	t.Parallel()
	m := newMaster(t, map[string]string{"w1": "sekrit"})
	w := startWorker(t, m.addr, "w1", "not-the-password")
	// The worker must take the refusal for what it is (and retry), not
	// for an error that stops it.
	waitFor(t, 2*time.Minute, "the worker to see its login refused", func() bool {
		return strings.Contains(w.log(), "unauthorized login; check worker name and password")
	})
	waitFor(t, time.Minute, "the refusal logged", func() bool {
		return strings.Contains(m.logs.String(), "pb: refused login")
	})
	if l := m.logs.String(); !strings.Contains(l, "worker=w1") || !strings.Contains(l, "reason=\"wrong password\"") || !strings.Contains(l, "remote=127.0.0.1:") {
		t.Errorf("refusal log lacks worker, reason or address:\n%s", l)
	}
	select {
	case c := <-m.conns:
		t.Fatalf("a refused worker got a Conn: %s", c.Name())
	case <-w.done:
		t.Fatal("the refused worker stopped instead of retrying")
	default:
	}
}

func TestShellCommands(t *testing.T) {
	t.Parallel()
	_, w, c := attached(t)
	if fi, err := os.Stat(filepath.Join(w.dir, "bdir")); err != nil || !fi.IsDir() {
		t.Fatalf("builder dir: %v", err)
	}
	// One Conn carries many commands, one after the other.
	for i := range 25 {
		s := shell(t, c, strconv.Itoa(i), []any{"sh", "-c", fmt.Sprintf("echo out %d $GBB; echo err >&2; exit %d", i, i%4)})
		if err := s.wait(t); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if got, want := s.text("stdout"), fmt.Sprintf("out %d pb\n", i); got != want {
			t.Errorf("command %d stdout %q, want %q", i, got, want)
		}
		if got := s.text("stderr"); got != "err\n" {
			t.Errorf("command %d stderr %q", i, got)
		}
		if rc, ok := s.rc(); !ok || rc != int64(i%4) {
			t.Errorf("command %d rc %d (%v), want %d", i, rc, ok, i%4)
		}
	}
	// An unknown command is the worker's error, returned.
	if err := c.StartCommand(ctxT(t), newSink(), "b", "x", "nosuchcommand", map[string]any{}); err == nil {
		t.Error("an unknown command started")
	}
	// A builder the worker has not set up.
	if err := c.StartCommand(ctxT(t), newSink(), "nope", "y", "shell", map[string]any{}); err == nil {
		t.Error("a command started on an unknown builder")
	}
}

// memWriter is a FileWriter into memory.
type memWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	modified time.Time
	closed   bool
	unpacked bool

	unpackErr error // what Unpack returns
}

func (w *memWriter) Write(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	return nil
}

func (w *memWriter) Utime(_, modified time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.modified = modified
	return nil
}

func (w *memWriter) Unpack() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unpacked = true
	return w.unpackErr
}

func (w *memWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

// memReader is a FileReader from memory.
type memReader struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
}

func (r *memReader) Read(n int) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := make([]byte, n)
	k, err := r.r.Read(b)
	if err == io.EOF {
		return nil, nil
	}
	return b[:k], err
}

func (r *memReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func TestFileTransfers(t *testing.T) {
	t.Parallel()
	_, w, c := attached(t)
	// Every byte value, over many blocks.
	data := make([]byte, 300_000)
	for i := range data {
		data[i] = byte(i * 7 % 256)
	}
	r := &memReader{r: bytes.NewReader(data)}
	s := newSink()
	err := c.StartCommand(ctxT(t), s, "b", "dl", "downloadFile", map[string]any{
		"workdir": "build", "workerdest": "in.bin", "reader": bbworker.FileReader(r),
		"maxsize": nil, "blocksize": int64(16384), "mode": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.wait(t); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(w.dir, "bdir", "build", "in.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file: %d bytes, equal %v, %v", len(got), bytes.Equal(got, data), err)
	}
	if rc, _ := s.rc(); rc != 0 {
		t.Errorf("download rc %d", rc)
	}

	stamp := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(w.dir, "bdir", "build", "in.bin"), stamp, stamp); err != nil {
		t.Fatal(err)
	}
	wr := &memWriter{}
	s = newSink()
	err = c.StartCommand(ctxT(t), s, "b", "ul", "uploadFile", map[string]any{
		"workdir": "build", "workersrc": "in.bin", "writer": bbworker.FileWriter(wr),
		"maxsize": nil, "blocksize": int64(16384), "keepstamp": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.wait(t); err != nil {
		t.Fatal(err)
	}
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if !bytes.Equal(wr.buf.Bytes(), data) || !wr.closed {
		t.Errorf("uploaded %d bytes (equal %v), closed %v", wr.buf.Len(), bytes.Equal(wr.buf.Bytes(), data), wr.closed)
	}
	if !wr.modified.Equal(stamp) {
		t.Errorf("uploaded file's time %v, want %v", wr.modified, stamp)
	}
}

func TestInterruptCommand(t *testing.T) {
	t.Parallel()
	_, w, c := attached(t)
	s := shell(t, c, "sleep", []any{"sh", "-c", "echo $$ > pid; exec sleep 600"})
	pidFile := filepath.Join(w.dir, "bdir", "build", "pid")
	var pid int
	waitFor(t, time.Minute, "the sleep to start", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	waitFor(t, time.Minute, "sleep to be exec'd", func() bool {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return bytes.HasPrefix(cmdline, []byte("sleep\x00600"))
	})
	if err := c.InterruptCommand(ctxT(t), "b", "sleep", "test stops it"); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if rc, ok := s.rc(); !ok || rc == 0 {
		t.Errorf("interrupted command rc %d (%v)", rc, ok)
	}
	waitFor(t, time.Minute, "the sleep process to be gone", func() bool {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	})
}

func TestKilledWorkerIsGone(t *testing.T) {
	t.Parallel()
	_, w, c := attached(t)
	// A running command completes with the lost connection.
	s := shell(t, c, "sleep", []any{"sleep", "600"})
	// The master's keepalive loop, as the engine runs it: a failed or
	// unanswered keepalive drops the connection.
	const interval, timeout = time.Second, 2 * time.Second
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-c.Done():
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := c.Keepalive(ctx)
			cancel()
			if err != nil {
				c.Close()
				return
			}
		}
	})
	if err := c.Keepalive(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w.kill()
	killed := time.Now()
	select {
	case <-c.Done():
		t.Logf("Done %v after SIGKILL", time.Since(killed))
	case <-time.After(interval + timeout + 5*time.Second):
		t.Fatal("Done did not close within the keepalive bound")
	}
	if err := s.wait(t); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("running command completed with %v, want ErrConnectionLost", err)
	}
	if err := c.Print(ctxT(t), "anyone?"); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Print on a gone worker: %v", err)
	}
}

func TestDuplicateLoginRefused(t *testing.T) {
	t.Parallel()
	m, _, c := attached(t)
	w2 := startWorker(t, m.addr, "w1", "sekrit")
	// buildbot pings the first connection; it answers, so the second is
	// refused (and a buildbot-worker stops on that refusal).
	waitFor(t, 2*time.Minute, "the duplicate refused", func() bool {
		return strings.Contains(m.logs.String(), "duplicate of a live connection")
	})
	select {
	case <-w2.done:
	case <-time.After(time.Minute):
		t.Error("the refused duplicate worker did not stop")
	}
	select {
	case c2 := <-m.conns:
		t.Fatalf("the duplicate got a Conn from %s", c2.Remote())
	case <-c.Done():
		t.Fatal("the first connection was dropped")
	default:
	}
	if err := c.Print(ctxT(t), "still here"); err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryUpload(t *testing.T) {
	t.Parallel()
	_, w, c := attached(t)
	src := filepath.Join(w.dir, "bdir", "build", "out")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"a.txt": "alpha\n", "sub/b.bin": "\x00\x01\xff"}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	upload := func(wr *memWriter) *sink {
		s := newSink()
		err := c.StartCommand(ctxT(t), s, "b", "ud", "uploadDirectory", map[string]any{
			"workdir": "build", "workersrc": "out", "writer": bbworker.FileWriter(wr),
			"maxsize": nil, "blocksize": int64(4096), "compress": nil,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	wr := &memWriter{}
	if err := upload(wr).wait(t); err != nil {
		t.Fatal(err)
	}
	wr.mu.Lock()
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(wr.buf.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the upload is no tar: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			got[strings.TrimPrefix(h.Name, "./")] = string(b)
		}
	}
	// A directory upload ends with unpack; the worker does not close.
	if !wr.unpacked {
		t.Error("not unpacked")
	}
	wr.mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(files) {
		t.Errorf("tar holds %v, want %v", got, files)
	}

	// The master's error reaches the worker as a failure, and ends the
	// command with it.
	s := upload(&memWriter{unpackErr: errors.New("disk full on the master")})
	if err := s.wait(t); err == nil || !strings.Contains(err.Error(), "disk full on the master") {
		t.Errorf("failed unpack completed with %v", err)
	}
}

func TestStoppedWorkerFoundByKeepalive(t *testing.T) {
	t.Parallel()
	_, w, c := attached(t)
	// SIGSTOP: the connection stays open but nothing answers, as with
	// a worker behind a dead network.
	if err := syscall.Kill(w.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := c.Keepalive(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Keepalive to a stopped worker: %v", err)
	}
	c.Close()
	select {
	case <-c.Done():
		t.Logf("Done %v after SIGSTOP", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("Done did not close after Close")
	}
}
