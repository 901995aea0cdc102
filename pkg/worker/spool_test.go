package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

func TestFileSpoolReplay(t *testing.T) {
	t.Parallel()
	chunks := []protocol.Output{
		{Stream: protocol.Header, Data: []byte("hdr\n")},
		{Stream: protocol.Stdout, Data: []byte("out one\n")},
		{Stream: protocol.Stderr, Data: []byte("err\n")},
		{Stream: protocol.LogFile, Log: "test.log", Data: []byte("logged\n")},
		{Stream: protocol.Stdout, Data: []byte("out two\n")},
	}
	for _, tc := range []struct {
		name   string
		max    int64
		offset int64
		want   []protocol.Output
	}{
		{"all", 0, 0, chunks},
		{"from a chunk's start", 0, 12, chunks[2:]},
		{"from inside a chunk", 0, 9, append([]protocol.Output{{Stream: protocol.Stdout, Data: []byte("ne\n")}}, chunks[2:]...)},
		{"from the end", 0, 31, nil},
		{"past the limit", 14, 0, []protocol.Output{
			chunks[0], chunks[1],
			{Stream: protocol.Stderr, Data: []byte("er")},
			{Stream: protocol.Header, Data: []byte("worker: 17 bytes of output past the spool's limit of 14 bytes were not kept\n")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), SpoolDir)
			fs := &FileSpools{Dir: dir, Max: tc.max}
			sp, err := fs.Create("build1-step2-key")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range chunks {
				if err := sp.Write(c); err != nil {
					t.Fatal(err)
				}
			}
			var got []protocol.Output
			if err := sp.Replay(tc.offset, func(o protocol.Output) { got = append(got, o) }); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("replay from %d (-want +got):\n%s", tc.offset, diff)
			}
			// Writing goes on after a replay.
			if err := sp.Write(protocol.Output{Stream: protocol.Stdout, Data: []byte("more\n")}); err != nil {
				t.Fatal(err)
			}
			if err := sp.Remove(); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("spool files left after Remove: %v", ents)
			}
		})
	}
}

// master is one run of a master's protocol end on a fixed address.
type master struct {
	cancel context.CancelFunc
	done   chan error
	conns  chan *protocol.WorkerConn
}

func startMaster(t *testing.T, addr string) *master {
	t.Helper()
	var lis net.Listener
	var err error
	// The address was free a moment ago; the previous master may still be
	// letting it go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	m := &master{done: make(chan error, 1), conns: make(chan *protocol.WorkerConn, 4)}
	srv := protocol.NewServer(protocol.ServerConfig{Attach: func(c *protocol.WorkerConn) { m.conns <- c }})
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- srv.Serve(ctx, lis) }()
	t.Cleanup(m.stop)
	return m
}

func (m *master) stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.cancel = nil
	}
}

func (m *master) conn(t *testing.T) *protocol.WorkerConn {
	t.Helper()
	select {
	case c := <-m.conns:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("no worker attached")
		return nil
	}
}

// startResumableWorker runs a worker with file spools against addr.
func startResumableWorker(t *testing.T, addr, basedir string) {
	t.Helper()
	cl := protocol.NewClient(protocol.ClientConfig{
		Master:     addr,
		Name:       "w",
		Executor:   NewExecutor(basedir, nil),
		Spools:     &FileSpools{Dir: filepath.Join(basedir, SpoolDir)},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

// outputs gathers a command's output.
type outputs struct {
	mu  sync.Mutex
	buf strings.Builder
	n   int64
}

func (o *outputs) add(out protocol.Output) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n += int64(len(out.Data))
	if out.Stream == protocol.Stdout {
		o.buf.Write(out.Data)
	}
}

func (o *outputs) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runDetached starts a resumable command that prints "one", writes its pid,
// waits for the file go, prints "two", then stops the master; it returns
// the pid and the output bytes the master got.
func runDetached(t *testing.T, m *master, dir, key string, keep time.Duration) (int, int64) {
	t.Helper()
	c := m.conn(t)
	var out outputs
	type result struct {
		res protocol.Result
		err error
	}
	rc := make(chan result, 1)
	go func() {
		res, err := c.Run(context.Background(), protocol.Command{
			Builder: "b",
			Shell: &protocol.ShellCommand{Script: fmt.Sprintf(
				"echo one; echo $$ > %s/pid; while [ ! -f %s/go ]; do sleep 0.02; done; echo two", dir, dir)},
			ResumeKey: key,
			Keep:      keep,
		}, out.add)
		rc <- result{res, err}
	}()
	waitUntil(t, "the command's first line", func() bool { return out.String() == "one\n" })
	var pid int
	waitUntil(t, "the command's pid", func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return pid > 0
	})
	m.stop()
	r := <-rc
	if !errors.Is(r.err, protocol.ErrConnectionLost) || !errors.Is(c.Err(), protocol.ErrMasterStopping) {
		t.Fatalf("Run across the master's stop: %+v, %v (conn: %v); want ErrConnectionLost, ErrMasterStopping", r.res, r.err, c.Err())
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the resumable command's process after the master stopped: %v", err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	return pid, out.n
}

// TestReattach: a resumable command outlives its master; the worker lists
// it in the hello to the next one, and replays the output the master
// lacks, then the live rest and its result.
func TestReattach(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	m := startMaster(t, addr)
	startResumableWorker(t, addr, filepath.Join(dir, "worker"))
	pid, got := runDetached(t, m, dir, "build1-step2-abc", time.Minute)

	m2 := startMaster(t, addr)
	c := m2.conn(t)
	kept := c.Kept()
	if len(kept) != 1 || kept[0].ResumeKey != "build1-step2-abc" || kept[0].Complete || kept[0].OutputSize < got {
		t.Fatalf("kept commands in the hello: %+v, want the running command with at least %d bytes", kept, got)
	}
	// The master lacks the bytes from offset on: they come again.
	offset := got - 2 // the "e\n" of "one\n"
	var out outputs
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := c.Resume(context.Background(), "build1-step2-abc", offset, out.add)
	if err != nil || res.ExitCode != 0 || res.Err != "" {
		t.Fatalf("Resume: %+v, %v", res, err)
	}
	if s := out.String(); s != "e\ntwo\n" {
		t.Errorf("output after reattaching from byte %d: %q, want %q", offset, s, "e\ntwo\n")
	}
	if !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		t.Errorf("process %d still there after its command completed", pid)
	}
	waitUntil(t, "the spool removed", func() bool {
		ents, _ := os.ReadDir(filepath.Join(dir, "worker", SpoolDir))
		return len(ents) == 0
	})
}

// TestReattachCompleted: a command that ends while no master is there
// keeps its result for the next one.
func TestReattachCompleted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	m := startMaster(t, addr)
	startResumableWorker(t, addr, filepath.Join(dir, "worker"))
	pid, got := runDetached(t, m, dir, "k", time.Minute)
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the command's end", func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })

	m2 := startMaster(t, addr)
	c := m2.conn(t)
	if kept := c.Kept(); len(kept) != 1 || !kept[0].Complete {
		// The worker may have said hello before the process was reaped:
		// then it reported it running; either way Resume gets it all.
		t.Logf("kept commands in the hello: %+v", kept)
	}
	var out outputs
	res, err := c.Resume(context.Background(), "k", got, out.add)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Resume: %+v, %v", res, err)
	}
	if s := out.String(); s != "two\n" {
		t.Errorf("output after reattaching: %q, want %q", s, "two\n")
	}
}

// TestAbandonKills: a kept command its master does not know is killed.
func TestAbandonKills(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	m := startMaster(t, addr)
	startResumableWorker(t, addr, filepath.Join(dir, "worker"))
	pid, _ := runDetached(t, m, dir, "k", time.Minute)

	m2 := startMaster(t, addr)
	c := m2.conn(t)
	if kept := c.Kept(); len(kept) != 1 || kept[0].ResumeKey != "k" {
		t.Fatalf("kept commands in the hello: %+v", kept)
	}
	if err := c.Abandon(context.Background(), "k", "unknown command"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the abandoned command killed", func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })
	waitUntil(t, "the spool removed", func() bool {
		ents, _ := os.ReadDir(filepath.Join(dir, "worker", SpoolDir))
		return len(ents) == 0
	})
}

// BenchmarkFileSpool measures what spooling adds to a resumable command's
// output: writing it in the pipe reader's 32 KiB chunks, then one replay.
func BenchmarkFileSpool(b *testing.B) {
	chunk := protocol.Output{Stream: protocol.Stdout, Data: []byte(strings.Repeat("0123456789abcdef", 2<<10))}
	fs := &FileSpools{Dir: filepath.Join(b.TempDir(), SpoolDir)}
	b.SetBytes(int64(len(chunk.Data)))
	sp, err := fs.Create("bench")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := sp.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	var n int64
	if err := sp.Replay(0, func(o protocol.Output) { n += int64(len(o.Data)) }); err != nil {
		b.Fatal(err)
	}
	if want := int64(b.N) * int64(len(chunk.Data)); n != want {
		b.Errorf("replayed %d bytes, want %d", n, want)
	}
	if err := sp.Remove(); err != nil {
		b.Fatal(err)
	}
}

// TestNotResumableKilled: a worker with spools still kills a command
// started without a resume key when its stream ends.
func TestNotResumableKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	m := startMaster(t, addr)
	startResumableWorker(t, addr, filepath.Join(dir, "worker"))
	c := m.conn(t)
	rc := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), protocol.Command{
			Builder: "b",
			Shell:   &protocol.ShellCommand{Script: fmt.Sprintf("echo $$ > %s/pid; while :; do sleep 0.02; done", dir)},
		}, nil)
		rc <- err
	}()
	var pid int
	waitUntil(t, "the command's pid", func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return pid > 0
	})
	m.stop()
	if err := <-rc; !errors.Is(err, protocol.ErrConnectionLost) {
		t.Fatalf("Run across the master's stop: %v, want ErrConnectionLost", err)
	}
	waitUntil(t, "the command killed", func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })
	if ents, _ := os.ReadDir(filepath.Join(dir, "worker", SpoolDir)); len(ents) != 0 {
		t.Errorf("spool files for a command that is not resumable: %v", ents)
	}
}

// TestKeepExpires: a kept command no master reattaches within its Keep is
// killed, and its spool removed.
func TestKeepExpires(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	m := startMaster(t, addr)
	startResumableWorker(t, addr, filepath.Join(dir, "worker"))
	pid, _ := runDetached(t, m, dir, "k", 2*time.Second)
	waitUntil(t, "the kept command killed", func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })
	waitUntil(t, "the spool removed", func() bool {
		ents, _ := os.ReadDir(filepath.Join(dir, "worker", SpoolDir))
		return len(ents) == 0
	})
	// The next master hears of nothing.
	m2 := startMaster(t, addr)
	if kept := m2.conn(t).Kept(); len(kept) != 0 {
		t.Errorf("kept commands after their keep ran out: %+v", kept)
	}
}

// TestKeptStaysWithItsMaster: a worker with two masters moves to the
// second when the first stops while a resumable command runs; the second
// does not hear of the command (it has no build for it) and cannot take
// it or kill it; the first, back, resumes it.
func TestKeptStaysWithItsMaster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addrs, a, b := startTwoMasters(t, dir)
	pid, got := runDetached(t, a, dir, "build1-step2-abc", time.Minute)

	cb := b.conn(t)
	if kept := cb.Kept(); len(kept) != 0 {
		t.Errorf("the other master heard of the first one's kept commands: %+v", kept)
	}
	// Bounded: a Resume the worker took would wait for the command's end.
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	res, err := cb.Resume(rctx, "build1-step2-abc", 0, func(protocol.Output) {})
	if err != nil || !strings.Contains(res.Err, "no kept command") {
		t.Errorf("the other master's Resume of the first one's command: %+v, %v; want a refusal", res, err)
	}
	if err := cb.Abandon(context.Background(), "build1-step2-abc", "unknown command"); err != nil {
		t.Fatal(err)
	}
	// The Abandon is handled in order with the Run that follows it (of
	// another builder: one of the same builder would end the command, see
	// TestKeptYieldsItsBuilder).
	if res, err := cb.Run(context.Background(), protocol.Command{Builder: "other", Shell: &protocol.ShellCommand{Argv: []string{"true"}}}, func(protocol.Output) {}); err != nil || res.ExitCode != 0 {
		t.Fatalf("Run on the other master: %+v, %v", res, err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the first master's command after the other abandoned it: %v", err)
	}

	a2 := startMaster(t, addrs[0])
	b.stop()
	ca := a2.conn(t)
	if kept := ca.Kept(); len(kept) != 1 || kept[0].ResumeKey != "build1-step2-abc" || kept[0].OutputSize < got {
		t.Fatalf("kept commands in the hello to the first master, back: %+v", kept)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out outputs
	res, err = ca.Resume(context.Background(), "build1-step2-abc", got, out.add)
	if err != nil || res.ExitCode != 0 || res.Err != "" {
		t.Fatalf("Resume at the first master: %+v, %v", res, err)
	}
	if s := out.String(); s != "two\n" {
		t.Errorf("output after reattaching: %q, want %q", s, "two\n")
	}
}

// TestKeptYieldsItsBuilder: a worker with two masters moved to the second
// while a resumable command of builder b ran for the first. When the
// second runs a command for b (the request built again, once the build
// ended RETRY), the kept command is killed before it starts: two builds
// must not share b's directory. (An outside probe saw both run together.)
func TestKeptYieldsItsBuilder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, a, b := startTwoMasters(t, dir)
	basedir := filepath.Join(dir, "worker")
	pid, _ := runDetached(t, a, dir, "build1-step2-abc", time.Minute)

	cb := b.conn(t)
	var out outputs
	res, err := cb.Run(context.Background(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{
		Script: fmt.Sprintf("if kill -0 %d 2>/dev/null; then echo shared; else echo alone; fi", pid)}}, out.add)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run of builder b on the other master: %+v, %v", res, err)
	}
	if s := out.String(); s != "alone\n" {
		t.Errorf("the other master's command of builder b ran beside the kept one: %q, want %q", s, "alone\n")
	}
	waitUntil(t, "the kept command's spool removed", func() bool {
		ents, _ := os.ReadDir(filepath.Join(basedir, SpoolDir))
		return len(ents) == 0
	})
}

// startTwoMasters starts two masters and a worker with file spools (its
// basedir dir/worker) that names both, the first first; it returns the
// masters' addresses and the masters.
func startTwoMasters(t *testing.T, dir string) (addrs []string, a, b *master) {
	t.Helper()
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, lis.Addr().String())
		lis.Close()
	}
	a = startMaster(t, addrs[0])
	b = startMaster(t, addrs[1])
	basedir := filepath.Join(dir, "worker")
	cl := protocol.NewClient(protocol.ClientConfig{
		Masters:    []protocol.MasterAddr{{Addr: addrs[0]}, {Addr: addrs[1]}},
		Name:       "w",
		Executor:   NewExecutor(basedir, nil),
		Spools:     &FileSpools{Dir: filepath.Join(basedir, SpoolDir)},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return addrs, a, b
}
