package bbworker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/bbworker"
	"github.com/gbb-ci/gbb/pkg/bbworker/msgpack"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/worker"
)

// attached starts a msgpack Server on loopback and a real buildbot-worker
// 3.7 (Debian's) logged in to it, and returns the Worker the master makes
// of it, serving builder "b", and the worker's basedir.
func attached(t *testing.T) (*bbworker.Worker, string) {
	t.Helper()
	testdeb.Need(t, "buildbot-worker", "buildbot-worker")
	testdeb.Need(t, "wamp", "python3-autobahn")
	if out, err := exec.Command("/usr/bin/python3", "-c", "import msgpack, autobahn").CombinedOutput(); err != nil {
		t.Fatalf("buildbot-worker's msgpack protocol needs python3-msgpack and python3-autobahn: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan bbworker.Conn, 1)
	srv := &msgpack.Server{
		Password: func(name string) (string, bool) { return "pw", name == "bb" },
		Attach: func(c bbworker.Conn) {
			conns <- c
			<-c.Done()
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	dir := filepath.Join(t.TempDir(), "worker")
	if out, err := exec.Command("buildbot-worker", "create-worker", "--protocol", "msgpack_experimental_v7",
		"--umask=0o22", "--maxdelay=2", dir, ln.Addr().String(), "bb", "pw").CombinedOutput(); err != nil {
		t.Fatalf("create-worker: %v\n%s", err, out)
	}
	cmd := exec.Command("buildbot-worker", "start", "--nodaemon", dir)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
	})
	var c bbworker.Conn
	select {
	case c = <-conns:
	case <-time.After(60 * time.Second):
		t.Fatal("no buildbot-worker attached within 60s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := bbworker.Attach(ctx, c, bbworker.Config{Builders: []bbworker.Builder{{Name: "b", Dir: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	return w, dir
}

// output collects a command's output as a log reads: one line a stream
// letter, as the master's log writer stores it.
type output struct{ o, e, h strings.Builder }

func (o *output) add(x protocol.Output) {
	switch x.Stream {
	case protocol.Stdout:
		o.o.Write(x.Data)
	case protocol.Stderr:
		o.e.Write(x.Data)
	case protocol.Header:
		o.h.Write(x.Data)
	}
}

// stepHeaders are the header lines the git step writes itself, as
// gbb-worker does; each worker writes its shell commands its own way.
var stepHeaders = regexp.MustCompile(`(?m)^(mode |rm -rf |cp -a |command interrupted).*$`)

// progress are git's progress lines, whose count and rates vary from run
// to run (and which a buildbot-worker splits at each \r, as buildbot's
// newline_re says, where a gbb-worker keeps the \r).
var progress = regexp.MustCompile(`(?m)^(.*(objects|deltas): |remote: ).*\n`)

func (o *output) view(basedir string) string {
	hs := strings.Join(stepHeaders.FindAllString(o.h.String(), -1), "\n")
	stderr := progress.ReplaceAllString(o.e.String(), "")
	return strings.ReplaceAll(fmt.Sprintf("stdout:\n%sstderr:\n%sheaders:\n%s\n", o.o.String(), stderr, hs), basedir, "BASEDIR")
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitAsGBBWorker runs the same git steps on a buildbot-worker, driven
// from the master as shell commands, and on gbb-worker's executor, and
// compares what each step says and checks out: every mode and method,
// a second run that fetches, a pinned revision and a shallow clone.
func TestGitAsGBBWorker(t *testing.T) {
	bb, bbBase := attached(t)
	gbbBase := t.TempDir()
	gbb := worker.NewExecutor(gbbBase, nil)

	repo := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "init", "-q", "-b", "master")
	os.WriteFile(filepath.Join(repo, "a.txt"), []byte("one\n"), 0o644)
	os.WriteFile(filepath.Join(repo, ".gitignore"), []byte("*.o\n"), 0o644)
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "first")
	first := git(t, repo, "rev-parse", "HEAD")

	steps := []struct {
		name string
		g    protocol.GitCommand
		prep func() // runs once before the step
		// before runs on both workdirs before the step (dir is the
		// checkout); after checks the checkout.
		before func(dir string)
		after  func(t *testing.T, dir string)
	}{
		{name: "clone", g: protocol.GitCommand{Branch: "master"}},
		{name: "fetch a new commit", g: protocol.GitCommand{Branch: "master"}, prep: func() {
			os.WriteFile(filepath.Join(repo, "a.txt"), []byte("two\n"), 0o644)
			git(t, repo, "commit", "-q", "-am", "second")
		}},
		{name: "pinned revision", g: protocol.GitCommand{Branch: "master", Revision: first}},
		{name: "fresh", g: protocol.GitCommand{Branch: "master", Mode: protocol.GitFull, Method: protocol.GitFresh},
			before: func(dir string) {
				os.WriteFile(filepath.Join(dir, "untracked"), nil, 0o644)
				os.WriteFile(filepath.Join(dir, "x.o"), nil, 0o644)
			},
			after: func(t *testing.T, dir string) {
				for _, f := range []string{"untracked", "x.o"} {
					if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
						t.Errorf("%s left by method fresh", f)
					}
				}
			}},
		{name: "clean", g: protocol.GitCommand{Branch: "master", Mode: protocol.GitFull, Method: protocol.GitClean},
			before: func(dir string) {
				os.WriteFile(filepath.Join(dir, "untracked"), nil, 0o644)
				os.WriteFile(filepath.Join(dir, "x.o"), nil, 0o644)
			},
			after: func(t *testing.T, dir string) {
				if _, err := os.Stat(filepath.Join(dir, "untracked")); err == nil {
					t.Error("untracked left by method clean")
				}
				if _, err := os.Stat(filepath.Join(dir, "x.o")); err != nil {
					t.Error("method clean removed an ignored file")
				}
			}},
		{name: "clobber", g: protocol.GitCommand{Branch: "master", Mode: protocol.GitFull, Method: protocol.GitClobber}},
		{name: "copy", g: protocol.GitCommand{Branch: "master", Mode: protocol.GitFull, Method: protocol.GitCopy}},
		{name: "shallow, default branch", g: protocol.GitCommand{RepoURL: "file://" + repo, Depth: 1, Workdir: "shallow"},
			after: func(t *testing.T, dir string) {
				if n := git(t, dir, "rev-list", "--count", "HEAD"); n != "1" {
					t.Errorf("shallow clone has %s commits", n)
				}
			}},
		{name: "unknown revision", g: protocol.GitCommand{Branch: "master", Revision: "0123456789012345678901234567890123456789"}},
	}
	for _, s := range steps {
		g := s.g
		if g.RepoURL == "" {
			g.RepoURL = repo
		}
		if g.Workdir == "" {
			g.Workdir = "build"
		}
		if s.prep != nil {
			s.prep()
		}
		if s.before != nil {
			s.before(filepath.Join(bbBase, "b", g.Workdir))
			s.before(filepath.Join(gbbBase, "b", g.Workdir))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var bo, gbo output
		bres, err := bb.Run(ctx, protocol.Command{Builder: "b", Git: &g}, bo.add)
		if err != nil {
			cancel()
			t.Fatalf("%s: on the buildbot-worker: %v", s.name, err)
		}
		gres := gbb.Run(ctx, protocol.Command{Builder: "b", Git: &g}, gbo.add)
		cancel()
		if bres.ExitCode != gres.ExitCode || bres.GotRevision != gres.GotRevision || bres.Err != gres.Err {
			t.Errorf("%s: buildbot-worker %+v, gbb-worker %+v", s.name, bres, gres)
		}
		if diff := cmp.Diff(gbo.view(gbbBase), bo.view(bbBase)); diff != "" {
			t.Errorf("%s: output (-gbb-worker +buildbot-worker):\n%s\nbuildbot-worker's headers:\n%s", s.name, diff, bo.h.String())
		}
		if s.after != nil {
			s.after(t, filepath.Join(bbBase, "b", g.Workdir))
		}
	}
}

// TestWorkerKeepsNothing: a buildbot-worker keeps no command across a
// master restart, never says it drains, and its Err is nil while it is
// connected, then says why it ended.
func TestWorkerKeepsNothing(t *testing.T) {
	bb, _ := attached(t)
	if k := bb.Kept(); k != nil {
		t.Errorf("Kept = %v", k)
	}
	if _, err := bb.Resume(context.Background(), "k", 0, func(protocol.Output) {}); err == nil {
		t.Error("Resume did not fail")
	}
	if err := bb.Abandon(context.Background(), "k", "why"); err == nil {
		t.Error("Abandon did not fail")
	}
	if bb.Err() != nil {
		t.Errorf("Err = %v while connected", bb.Err())
	}
	if got := bb.Info().Extra["protocol"]; got != "msgpack" {
		t.Errorf("protocol = %q", got)
	}
	if !strings.HasPrefix(bb.Info().Version, "3.") {
		t.Errorf("version = %q, want buildbot-worker's 3.x", bb.Info().Version)
	}
	why := errors.New("removed from the config")
	bb.Close(why)
	<-bb.Done()
	if !errors.Is(bb.Err(), why) {
		t.Errorf("Err = %v, want %v", bb.Err(), why)
	}
	select {
	case <-bb.Draining():
		t.Error("Draining is closed")
	default:
	}
	_, err := bb.Run(context.Background(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Argv: []string{"true"}}}, func(protocol.Output) {})
	if !errors.Is(err, protocol.ErrConnectionLost) {
		t.Errorf("Run after the end: %v, want ErrConnectionLost", err)
	}
}
