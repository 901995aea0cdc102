package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// stoppableWorker is a worker run with a Drain channel (a first SIGTERM)
// and a ctx (the second).
type stoppableWorker struct {
	drain     chan struct{}
	interrupt context.CancelFunc
	done      chan struct{} // closed when Run returned
	err       error         // Run's result, once done
	log       *lockedBuffer
}

func startStoppableWorker(t *testing.T, addr, basedir string) *stoppableWorker {
	t.Helper()
	w := &stoppableWorker{drain: make(chan struct{}), done: make(chan struct{}), log: &lockedBuffer{}}
	log := slog.New(slog.NewTextHandler(w.log, nil))
	cl := protocol.NewClient(protocol.ClientConfig{
		Master:     addr,
		Name:       "w",
		Executor:   NewExecutor(basedir, log),
		Spools:     &FileSpools{Dir: filepath.Join(basedir, SpoolDir)},
		Logger:     log,
		Drain:      w.drain,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	w.interrupt = cancel
	go func() {
		defer close(w.done)
		w.err = cl.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// freeAddr returns a loopback address free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// ran is a command's end as the master saw it.
type ran struct {
	res protocol.Result
	err error
}

// runAsync runs cmd on c in its own goroutine.
func runAsync(c *protocol.WorkerConn, cmd protocol.Command) <-chan ran {
	rc := make(chan ran, 1)
	go func() {
		res, err := c.Run(context.Background(), cmd, nil)
		rc <- ran{res, err}
	}()
	return rc
}

func waitRan(t *testing.T, rc <-chan ran) ran {
	t.Helper()
	select {
	case r := <-rc:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not end")
		return ran{}
	}
}

func waitRun(t *testing.T, w *stoppableWorker) error {
	t.Helper()
	select {
	case <-w.done:
		return w.err
	case <-time.After(30 * time.Second):
		t.Fatalf("the worker did not stop; its log:\n%s", w.log)
		return nil
	}
}

// TestDrain: a worker told to drain (a first SIGTERM) while a command runs
// tells its master (WorkerConn.Draining), refuses the next command, lets
// the running one end by itself and report its result, then closes its
// stream and Run returns nil; the refused command never runs and ends
// ErrWorkerDraining on the master at once, while the running one goes on
// (its build then ends RETRY and runs elsewhere). Plain and resumable
// (finish_steps_on_restart) commands alike.
func TestDrain(t *testing.T) {
	t.Parallel()
	for _, resumable := range []bool{false, true} {
		t.Run(fmt.Sprintf("resumable=%v", resumable), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			addr := freeAddr(t)
			m := startMaster(t, addr)
			w := startStoppableWorker(t, addr, filepath.Join(dir, "basedir"))
			c := m.conn(t)
			cmd := protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: fmt.Sprintf(
				"echo $$ > %[1]s/pid; while [ ! -f %[1]s/go ]; do sleep 0.02; done; echo made > %[1]s/made", dir)}}
			if resumable {
				cmd.ResumeKey, cmd.Keep = "build1-step1", time.Minute
			}
			first := runAsync(c, cmd)
			waitUntil(t, "the command's pid", func() bool {
				_, err := os.Stat(filepath.Join(dir, "pid"))
				return err == nil
			})

			close(w.drain)
			waitUntil(t, "the worker draining", func() bool {
				return strings.Contains(w.log.String(), "the running commands finish first")
			})
			select {
			case <-c.Draining():
			case <-time.After(30 * time.Second):
				t.Fatal("the master was not told the worker drains")
			}
			second := runAsync(c, protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: "touch " + dir + "/second"}})
			if r := waitRan(t, second); !errors.Is(r.err, protocol.ErrWorkerDraining) {
				t.Fatalf("the command sent while draining: %+v, %v; want ErrWorkerDraining", r.res, r.err)
			}
			if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}

			r := waitRan(t, first)
			if r.err != nil || r.res.ExitCode != 0 || r.res.Interrupted || r.res.Signal != "" {
				t.Fatalf("the running command: %+v, %v; want exit 0", r.res, r.err)
			}
			if _, err := os.Stat(filepath.Join(dir, "made")); err != nil {
				t.Fatalf("the running command did not run to its end: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "second")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the command sent while draining ran: %v", err)
			}
			if err := waitRun(t, w); err != nil {
				t.Fatalf("Client.Run after draining: %v", err)
			}
			<-c.Done()
			if !strings.Contains(c.Err().Error(), "worker closed the stream") {
				t.Errorf("the master saw the worker go with %v, want a clean close", c.Err())
			}
		})
	}
}

// TestDrainThenInterrupt: a second stop (Run's ctx) while draining kills
// the running command's process group and reports it interrupted; Run
// returns nil.
func TestDrainThenInterrupt(t *testing.T) {
	t.Parallel()
	for _, resumable := range []bool{false, true} {
		t.Run(fmt.Sprintf("resumable=%v", resumable), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			addr := freeAddr(t)
			m := startMaster(t, addr)
			w := startStoppableWorker(t, addr, filepath.Join(dir, "basedir"))
			c := m.conn(t)
			cmd := protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: fmt.Sprintf(
				"sleep 300 & echo $! > %s/pid; wait", dir)}}
			if resumable {
				cmd.ResumeKey, cmd.Keep = "build1-step1", time.Minute
			}
			first := runAsync(c, cmd)
			var pid int
			waitUntil(t, "the command's pid", func() bool {
				data, _ := os.ReadFile(filepath.Join(dir, "pid"))
				pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
				return pid > 0
			})

			close(w.drain)
			waitUntil(t, "the worker draining", func() bool {
				return strings.Contains(w.log.String(), "the running commands finish first")
			})
			w.interrupt()
			r := waitRan(t, first)
			if r.err != nil || !r.res.Interrupted {
				t.Fatalf("the running command: %+v, %v; want interrupted", r.res, r.err)
			}
			waitUntil(t, "the command's child gone", func() bool { return syscall.Kill(pid, 0) != nil })
			if err := waitRun(t, w); err != nil {
				t.Fatalf("Client.Run: %v", err)
			}
		})
	}
}
