package msgpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/bbworker"
)

// syncBuffer is a log sink safe for concurrent writes.
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

// master is a Server on loopback with one worker account.
type master struct {
	srv   *Server
	addr  string
	log   *syncBuffer
	conns chan bbworker.Conn
}

func startMaster(t *testing.T, passwords map[string]string) *master {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startMasterOn(t, ln, passwords)
}

// startMasterOn is startMaster serving ln.
func startMasterOn(t *testing.T, ln net.Listener, passwords map[string]string) *master {
	t.Helper()
	m := &master{addr: ln.Addr().String(), log: &syncBuffer{}, conns: make(chan bbworker.Conn, 8)}
	m.srv = &Server{
		Password: func(name string) (string, bool) { p, ok := passwords[name]; return p, ok },
		Attach: func(c bbworker.Conn) {
			m.conns <- c
			<-c.Done()
		},
		Logger: slog.New(slog.NewTextHandler(m.log, nil)),
	}
	served := make(chan error, 1)
	go func() { served <- m.srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := m.srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return m
}

// waitConn waits for the next attached worker.
func (m *master) waitConn(t *testing.T, w *worker) bbworker.Conn {
	t.Helper()
	select {
	case c := <-m.conns:
		return c
	case <-time.After(60 * time.Second):
		t.Fatalf("no worker attached within 60s; master log:\n%s\nworker log:\n%s", m.log, w.logText())
		return nil
	}
}

// worker is a real buildbot-worker process (Debian's buildbot-worker
// 3.7), created with create-worker as a user would.
type worker struct {
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

func needWorker(t *testing.T) {
	t.Helper()
	testdeb.Need(t, "buildbot-worker", "buildbot-worker")
	// buildbot-worker depends on both; msgpack needs them at run time.
	testdeb.Need(t, "wamp", "python3-autobahn")
	if out, err := exec.Command("/usr/bin/python3", "-c", "import msgpack, autobahn").CombinedOutput(); err != nil {
		t.Fatalf("buildbot-worker's msgpack protocol needs python3-msgpack and python3-autobahn: %v\n%s", err, out)
	}
}

func startWorker(t *testing.T, masterAddr, name, password string, options ...string) *worker {
	t.Helper()
	needWorker(t)
	dir := filepath.Join(t.TempDir(), "worker")
	args := append([]string{"create-worker", "--protocol", "msgpack_experimental_v7", "--umask=0o22", "--maxdelay=2"}, options...)
	out, err := exec.Command("buildbot-worker", append(args, dir, masterAddr, name, password)...).CombinedOutput()
	if err != nil {
		t.Fatalf("create-worker: %v\n%s", err, out)
	}
	w := &worker{dir: dir}
	w.cmd = exec.Command("buildbot-worker", "start", "--nodaemon", dir)
	w.cmd.Dir = dir
	w.cmd.Stdout, w.cmd.Stderr = io.Discard, io.Discard
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.exited = make(chan struct{})
	go func() { w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.exited:
		case <-time.After(20 * time.Second):
			w.cmd.Process.Kill()
			<-w.exited
		}
	})
	return w
}

func (w *worker) logText() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "twistd.log"))
	return string(b)
}

// sink records a command's updates and its completion.
type sink struct {
	mu      sync.Mutex
	updates []bbworker.Update
	changed chan struct{} // closed and replaced at each update
	done    chan struct{}
	failure error
}

func newSink() *sink { return &sink{changed: make(chan struct{}), done: make(chan struct{})} }

func (s *sink) Update(u []bbworker.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, u...)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sink) Complete(failure error) {
	s.mu.Lock()
	s.failure = failure
	s.mu.Unlock()
	close(s.done)
}

func (s *sink) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("command did not complete within 60s; updates: %v", s.all())
	}
	if s.failure != nil {
		t.Fatalf("command failed: %v", s.failure)
	}
}

func (s *sink) all() []bbworker.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bbworker.Update(nil), s.updates...)
}

// text joins the values of key (stdout, stderr, header).
func (s *sink) text(key string) string {
	var b strings.Builder
	for _, u := range s.all() {
		if u.Key == key {
			b.WriteString(u.Value.(string))
		}
	}
	return b.String()
}

func (s *sink) last(key string) (any, bool) {
	var v any
	found := false
	for _, u := range s.all() {
		if u.Key == key {
			v, found = u.Value, true
		}
	}
	return v, found
}

// attach starts a master and a worker and runs buildbot's attach
// sequence on the connection, with one builder "b1" in directory "b1dir".
func attach(t *testing.T) (*master, *worker, bbworker.Conn) {
	t.Helper()
	m := startMaster(t, map[string]string{"w1": "pass1"})
	w := startWorker(t, m.addr, "w1", "pass1")
	c := m.waitConn(t, w)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := c.Print(ctx, "attached"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetWorkerInfo(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := c.SetBuilderList(ctx, []bbworker.Builder{{Name: "b1", Dir: "b1dir"}})
	if err != nil {
		t.Fatalf("set builder list: %v\nworker log:\n%s", err, w.logText())
	}
	if len(names) != 1 || names[0] != "b1" {
		t.Fatalf("builder list: got %v, want [b1]", names)
	}
	return m, w, c
}

func TestLoginAndAttach(t *testing.T) {
	t.Parallel()
	_, w, c := attach(t)
	if c.Name() != "w1" || c.Protocol() != "msgpack" || !strings.HasPrefix(c.Remote(), "127.0.0.1:") {
		t.Errorf("conn: name %q protocol %q remote %q", c.Name(), c.Protocol(), c.Remote())
	}
	info, err := c.GetWorkerInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := info["version"].(string); !strings.HasPrefix(v, "3.7") {
		t.Errorf("info version %q, want 3.7.x", info["version"])
	}
	if info["basedir"] != w.dir {
		t.Errorf("info basedir %q, want %q", info["basedir"], w.dir)
	}
	if cmds, _ := info["worker_commands"].(map[string]any); cmds["shell"] == nil {
		t.Errorf("info worker_commands %v has no shell", info["worker_commands"])
	}
	// SetBuilderList made the builder's directory, as buildbot's master does.
	if st, err := os.Stat(filepath.Join(w.dir, "b1dir")); err != nil || !st.IsDir() {
		t.Errorf("builder directory: %v", err)
	}
	if err := c.Keepalive(t.Context()); err != nil {
		t.Errorf("keepalive: %v", err)
	}
	if !strings.Contains(w.logText(), "message from master: attached") {
		t.Errorf("the worker's log does not show the master's print:\n%s", w.logText())
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"w1": "pass1"})
	w := startWorker(t, m.addr, "w1", "wrong")
	// The real worker's attempts are refused and logged with its address.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(m.log.String(), "buildbot-worker refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged; master log:\n%s\nworker log:\n%s", m.log, w.logText())
		}
		select {
		case c := <-m.conns:
			t.Fatalf("a worker with a wrong password attached: %s", c.Name())
		case <-time.After(50 * time.Millisecond):
		}
	}
	line := m.log.String()
	for _, want := range []string{"why=Unauthorized", "worker=w1", "addr=127.0.0.1:"} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal log lacks %q:\n%s", want, line)
		}
	}
	// The answer on the wire is buildbot's: 401, and 400 for a malformed
	// header.
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Basic " + b64("w1:wrong"), http.StatusUnauthorized},
		{"Basic " + b64("nobody:pass1"), http.StatusUnauthorized},
		{"Basic " + b64("w1pass1"), http.StatusBadRequest},
		{"Bearer x", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest("GET", "http://"+m.addr+"/", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("auth %q: status %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}
}

func TestShellCommand(t *testing.T) {
	t.Parallel()
	_, _, c := attach(t)
	s := newSink()
	err := c.StartCommand(t.Context(), s, "b1", "c1", "shell", map[string]any{
		"workdir":  "build",
		"command":  []any{"/bin/sh", "-c", "printf 'hello\\nworld\\n'; echo oops >&2; pwd; echo in-the-logfile > extra.log; exit 3"},
		"env":      map[string]any{"GBB_TEST": "1"},
		"logfiles": map[string]any{"extra": "extra.log"},
		"timeout":  60, "want_stdout": 1, "want_stderr": 1, "logEnviron": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if rc, _ := s.last("rc"); rc != int64(3) {
		t.Errorf("rc %v, want 3", rc)
	}
	c.(*Conn).mu.Lock()
	wd := c.(*Conn).builderDirs["b1"] + "/build"
	c.(*Conn).mu.Unlock()
	if got, want := s.text("stdout"), "hello\nworld\n"+wd+"\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := s.text("stderr"); got != "oops\n" {
		t.Errorf("stderr %q, want %q", got, "oops\n")
	}
	if h := s.text("header"); !strings.Contains(h, " in dir "+wd) {
		t.Errorf("header %q does not name the workdir %s", h, wd)
	}
	var extra string
	for _, u := range s.all() {
		if u.Key == "log" {
			l := u.Value.([]any)
			if l[0] == "extra" {
				extra += l[1].(string)
			}
		}
	}
	if extra != "in-the-logfile\n" {
		t.Errorf("logfile extra %q, want %q", extra, "in-the-logfile\n")
	}
	if _, ok := s.last("elapsed"); !ok {
		t.Errorf("no elapsed update")
	}
}

// fileWriter is the master side of an upload, in memory.
type fileWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	closed   bool
	unpacked bool
	mtime    time.Time
}

func (f *fileWriter) Write(p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf.Write(p)
	return nil
}
func (f *fileWriter) Utime(_, m time.Time) error { f.mu.Lock(); f.mtime = m; f.mu.Unlock(); return nil }
func (f *fileWriter) Unpack() error              { f.mu.Lock(); f.unpacked = true; f.mu.Unlock(); return nil }
func (f *fileWriter) Close() error               { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

// fileReader is the master side of a download, from memory.
type fileReader struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
}

func (f *fileReader) Read(n int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := make([]byte, n)
	k, err := f.r.Read(b)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	return b[:k], err
}
func (f *fileReader) Close() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

func TestTransfers(t *testing.T) {
	t.Parallel()
	_, w, c := attach(t)
	ctx := t.Context()
	data := make([]byte, 300_000) // several blocks, not valid UTF-8
	rand.Read(data)
	data[0] = 0xff

	// downloadFile: master -> worker, exact bytes.
	rd := &fileReader{r: bytes.NewReader(data)}
	s := newSink()
	if err := c.StartCommand(ctx, s, "b1", "down", "downloadFile", map[string]any{
		"workdir": "build", "workerdest": "sub/in.bin", "reader": rd,
		"blocksize": 16384, "maxsize": nil, "mode": nil,
	}); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if rc, _ := s.last("rc"); rc != int64(0) {
		t.Fatalf("downloadFile rc %v; updates %v", rc, s.all())
	}
	got, err := os.ReadFile(filepath.Join(w.dir, "b1dir", "build", "sub", "in.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file: %d bytes (err %v), want the %d sent", len(got), err, len(data))
	}
	if !rd.closed {
		t.Errorf("reader not closed")
	}

	// uploadFile: worker -> master, exact bytes, with keepstamp.
	wr := &fileWriter{}
	s = newSink()
	if err := c.StartCommand(ctx, s, "b1", "up", "uploadFile", map[string]any{
		"workdir": "build", "workersrc": "sub/in.bin", "writer": wr,
		"blocksize": 16384, "maxsize": nil, "keepstamp": true,
	}); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if rc, _ := s.last("rc"); rc != int64(0) {
		t.Fatalf("uploadFile rc %v; updates %v", rc, s.all())
	}
	if !bytes.Equal(wr.buf.Bytes(), data) || !wr.closed {
		t.Fatalf("uploaded %d bytes (closed %v), want the %d on the worker", wr.buf.Len(), wr.closed, len(data))
	}
	st, err := os.Stat(filepath.Join(w.dir, "b1dir", "build", "sub", "in.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if d := wr.mtime.Sub(st.ModTime()); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("keepstamp: modified %v, the worker's file %v", wr.mtime, st.ModTime())
	}

	// uploadDirectory: a tar stream, then unpack.
	os.WriteFile(filepath.Join(w.dir, "b1dir", "build", "sub", "a.txt"), []byte("alpha\n"), 0o644)
	dw := &fileWriter{}
	s = newSink()
	if err := c.StartCommand(ctx, s, "b1", "updir", "uploadDirectory", map[string]any{
		"workdir": "build", "workersrc": "sub", "writer": dw,
		"blocksize": 16384, "maxsize": nil, "compress": nil,
	}); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if rc, _ := s.last("rc"); rc != int64(0) {
		t.Fatalf("uploadDirectory rc %v; updates %v", rc, s.all())
	}
	if !dw.unpacked {
		t.Errorf("directory upload not unpacked")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(dw.buf.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		b, _ := io.ReadAll(tr)
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
	if string(files["a.txt"]) != "alpha\n" || !bytes.Equal(files["in.bin"], data) {
		t.Errorf("tar holds %d entries; a.txt %q, in.bin %d bytes", len(files), files["a.txt"], len(files["in.bin"]))
	}
}

// sleeping returns the pids of processes whose command line is argv.
func sleeping(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(b) == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestInterruptCommand(t *testing.T) {
	t.Parallel()
	_, _, c := attach(t)
	arg := fmt.Sprintf("600.%d", time.Now().UnixNano()%1_000_000) // unique among tests
	s := newSink()
	if err := c.StartCommand(t.Context(), s, "b1", "sleep", "shell", map[string]any{
		"workdir": "build", "command": "echo started; exec sleep " + arg, "timeout": 1200, "logEnviron": false,
	}); err != nil {
		t.Fatal(err)
	}
	// The master's worker settings make the worker flush its output
	// within a second (buildbot's 5 s buffer_timeout would hold it back).
	start := time.Now()
	for s.text("stdout") != "started\n" {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-time.After(3*time.Second - time.Since(start)):
			t.Fatalf("no output within 3s of the command's start: %v", s.all())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(sleeping("sleep", arg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sleep %s did not start", arg)
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: there is no event to wait on
	}
	if err := c.InterruptCommand(t.Context(), "b1", "sleep", "stopped by the test"); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if rc, _ := s.last("rc"); rc == int64(0) || rc == nil {
		t.Errorf("rc %v after an interrupt, want non-zero", rc)
	}
	if h := s.text("header"); !strings.Contains(h, "killed") {
		t.Errorf("header %q does not say the process was killed", h)
	}
	if pids := sleeping("sleep", arg); len(pids) != 0 {
		t.Errorf("sleep %s still runs: %v", arg, pids)
	}
}

func TestKilledWorkerFound(t *testing.T) {
	t.Parallel()
	_, w, c := attach(t)
	s := newSink()
	if err := c.StartCommand(t.Context(), s, "b1", "long", "shell", map[string]any{
		"workdir": "build", "command": "sleep 30", "timeout": 1200, "logEnviron": false,
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// gbb's keepalive: a round trip every interval, each bounded by it.
	const interval = 2 * time.Second
	start := time.Now()
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			err := c.Keepalive(ctx)
			cancel()
			if err != nil {
				c.Close()
				return
			}
			select {
			case <-c.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
	select {
	case <-c.Done():
	case <-time.After(3 * interval):
		t.Fatalf("Done not closed %v after the worker was killed", 3*interval)
	}
	t.Logf("killed worker found gone after %v", time.Since(start))
	// The running command ends with the connection.
	select {
	case <-s.done:
		if s.failure == nil || !errors.Is(s.failure, ErrClosed) {
			t.Errorf("command completed with %v, want ErrClosed", s.failure)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the running command did not complete after the connection was lost")
	}
	if err := c.Print(t.Context(), "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("print on a lost connection: %v, want ErrClosed", err)
	}
}

func b64(s string) string {
	return strings.TrimSpace(base64Std(s))
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestStoppedWorkerKeepalive(t *testing.T) {
	t.Parallel()
	_, w, c := attach(t)
	// A worker that stops answering keeps its socket open: only the
	// keepalive's bound finds it.
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Signal(syscall.SIGCONT) })
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := c.Keepalive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("keepalive to a stopped worker: %v, want the deadline", err)
	}
	c.Close()
	waitDone(t, c, "Close")
}

func TestLeftoverDirsAndShutdown(t *testing.T) {
	t.Parallel()
	m := startMaster(t, map[string]string{"w1": "pass1"})
	w := startWorker(t, m.addr, "w1", "pass1", "--delete-leftover-dirs")
	c := m.waitConn(t, w)
	ctx := t.Context()
	// A builder directory from an old config, and a file beside it.
	if err := os.MkdirAll(filepath.Join(w.dir, "old-builder", "build"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetBuilderList(ctx, []bbworker.Builder{{Name: "b 1", Dir: "b_1"}}); err != nil {
		t.Fatalf("set builder list: %v\nworker log:\n%s", err, w.logText())
	}
	if _, err := os.Stat(filepath.Join(w.dir, "old-builder")); !os.IsNotExist(err) {
		t.Errorf("the leftover directory is still there (%v), as --delete-leftover-dirs asks it not to be", err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "notes.txt")); err != nil {
		t.Errorf("a file beside the builder directories was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "b_1")); err != nil {
		t.Errorf("the builder's directory: %v", err)
	}
	// remote_shutdown stops the worker process.
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit after shutdown")
	}
	waitDone(t, c, "the worker's exit")
}
