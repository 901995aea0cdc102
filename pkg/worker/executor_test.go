package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// recorder collects a command's output and tells when some text appeared.
type recorder struct {
	mu      sync.Mutex
	streams map[protocol.Stream]*strings.Builder
	want    string
	seen    chan struct{}
}

func newRecorder(want string) *recorder {
	return &recorder{streams: map[protocol.Stream]*strings.Builder{
		protocol.Stdout: {}, protocol.Stderr: {}, protocol.Header: {},
	}, want: want, seen: make(chan struct{})}
}

func (r *recorder) out(o protocol.Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.streams[o.Stream].Write(o.Data)
	if r.want != "" && strings.Contains(r.streams[protocol.Stdout].String(), r.want) {
		r.want = ""
		close(r.seen)
	}
}

func (r *recorder) get(s protocol.Stream) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams[s].String()
}

func run(t *testing.T, ctx context.Context, e *Executor, sh *protocol.ShellCommand, r *recorder) protocol.Result {
	t.Helper()
	res := e.Run(ctx, protocol.Command{Builder: "b", Shell: sh}, r.out)
	if res.Elapsed <= 0 {
		t.Errorf("Elapsed = %v, want > 0", res.Elapsed)
	}
	return res
}

var ignoreElapsed = cmpopts.IgnoreFields(protocol.Result{}, "Elapsed")

func TestRun(t *testing.T) {
	t.Parallel()
	basedir := t.TempDir()
	tests := []struct {
		name           string
		sh             protocol.ShellCommand
		res            protocol.Result
		stdout, stderr string
		header         []string
	}{
		{
			name:   "argv",
			sh:     protocol.ShellCommand{Argv: []string{"echo", "hello", "it's"}},
			stdout: "hello it's\n",
			header: []string{`['echo', 'hello', 'it\'s']`, filepath.Join(basedir, "b") + " (timeout None secs)"},
		},
		{
			name:   "script",
			sh:     protocol.ShellCommand{Script: "echo out; echo err >&2; exit 3", Workdir: "build"},
			res:    protocol.Result{ExitCode: 3},
			stdout: "out\n", stderr: "err\n",
			header: []string{filepath.Join(basedir, "b", "build")},
		},
		{
			name:   "env and workdir",
			sh:     protocol.ShellCommand{Script: `echo "$GBB_TEST" "$(pwd)"; test -n "$PATH"`, Workdir: "deep/er", Env: map[string]string{"GBB_TEST": "yes"}},
			stdout: "yes " + filepath.Join(basedir, "b", "deep", "er") + "\n",
		},
		{
			name:   "killed by itself",
			sh:     protocol.ShellCommand{Script: "kill -SEGV $$"},
			res:    protocol.Result{ExitCode: -1, Signal: "SEGV"},
			header: []string{"process killed by signal 11"},
		},
		{
			name:   "absolute workdir",
			sh:     protocol.ShellCommand{Argv: []string{"true"}, Workdir: "/tmp"},
			res:    protocol.Result{ExitCode: -1, Err: `workdir "/tmp" is absolute or escapes the builder's directory`},
			header: []string{"absolute or escapes"},
		},
		{
			name: "escaping workdir",
			sh:   protocol.ShellCommand{Argv: []string{"true"}, Workdir: "build/../../x"},
			res:  protocol.Result{ExitCode: -1, Err: `workdir "build/../../x" is absolute or escapes the builder's directory`},
		},
		{
			name: "no such program",
			sh:   protocol.ShellCommand{Argv: []string{"/nonexistent/prog"}},
			res:  protocol.Result{ExitCode: -1, Err: "cannot run /nonexistent/prog: fork/exec /nonexistent/prog: no such file or directory"},
		},
		{
			name: "argv and script",
			sh:   protocol.ShellCommand{Argv: []string{"true"}, Script: "true"},
			res:  protocol.Result{ExitCode: -1, Err: "shell command needs exactly one of argv and script"},
		},
	}
	e := NewExecutor(basedir, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRecorder("")
			res := run(t, t.Context(), e, &tt.sh, r)
			if diff := cmp.Diff(tt.res, res, ignoreElapsed); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if got := r.get(protocol.Stdout); got != tt.stdout {
				t.Errorf("stdout = %q, want %q", got, tt.stdout)
			}
			if got := r.get(protocol.Stderr); got != tt.stderr {
				t.Errorf("stderr = %q, want %q", got, tt.stderr)
			}
			for _, h := range tt.header {
				if got := r.get(protocol.Header); !strings.Contains(got, h) {
					t.Errorf("header %q lacks %q", got, h)
				}
			}
		})
	}
}

func TestBuilderName(t *testing.T) {
	t.Parallel()
	e := NewExecutor(t.TempDir(), nil)
	for _, b := range []string{"", "..", "a/b", "/abs"} {
		res := e.Run(t.Context(), protocol.Command{Builder: b, Shell: &protocol.ShellCommand{Argv: []string{"true"}}}, func(protocol.Output) {})
		if res.Err == "" {
			t.Errorf("builder %q: ran, want refused", b)
		}
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	const forever = "echo started; sleep 1000"
	tests := []struct {
		name      string
		sh        protocol.ShellCommand
		interrupt bool // cancel ctx once "started" is seen
		res       protocol.Result
		header    []string
	}{
		{
			name:   "timeout without output",
			sh:     protocol.ShellCommand{Script: forever, Timeout: 200 * time.Millisecond},
			res:    protocol.Result{ExitCode: -1, Signal: "KILL", TimedOut: true},
			header: []string{"command timed out: 0.2 seconds without output running ['/bin/sh', '-c', 'echo started; sleep 1000'], attempting to kill\n", "process killed by signal 9\n"},
		},
		{
			name:   "max time",
			sh:     protocol.ShellCommand{Script: "while :; do echo started; sleep 0.01; done", MaxTime: 300 * time.Millisecond, Timeout: time.Hour},
			res:    protocol.Result{ExitCode: -1, Signal: "KILL", TimedOut: true},
			header: []string{"command timed out: 0.3 seconds elapsed running", "process killed by signal 9\n"},
		},
		{
			name:      "interrupt",
			sh:        protocol.ShellCommand{Script: forever},
			interrupt: true,
			res:       protocol.Result{ExitCode: -1, Signal: "KILL", Interrupted: true},
			header:    []string{"command interrupted, attempting to kill\n", "process killed by signal 9\n"},
		},
		{
			name:      "sigterm obeyed",
			sh:        protocol.ShellCommand{Script: "trap 'echo got term; exit 7' TERM; echo started; while :; do sleep 1; done", SigtermTime: time.Hour},
			interrupt: true,
			res:       protocol.Result{ExitCode: 7, Interrupted: true},
		},
		{
			name:      "sigterm ignored",
			sh:        protocol.ShellCommand{Script: "trap '' TERM; echo started; while :; do sleep 1; done", SigtermTime: 100 * time.Millisecond},
			interrupt: true,
			res:       protocol.Result{ExitCode: -1, Signal: "KILL", Interrupted: true},
			header:    []string{"SIGTERM did not stop the command within 0.1 secs, sending SIGKILL", "process killed by signal 9\n"},
		},
		{
			name:   "timeout with sigterm",
			sh:     protocol.ShellCommand{Script: forever, Timeout: 100 * time.Millisecond, SigtermTime: time.Hour},
			res:    protocol.Result{ExitCode: -1, Signal: "TERM", TimedOut: true},
			header: []string{"process killed by signal 15\n"},
		},
	}
	e := NewExecutor(t.TempDir(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := newRecorder("started")
			if tt.interrupt {
				go func() {
					select {
					case <-r.seen:
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			res := run(t, ctx, e, &tt.sh, r)
			if diff := cmp.Diff(tt.res, res, ignoreElapsed); diff != "" {
				t.Errorf("result (-want +got):\n%s\nheader:\n%s", diff, r.get(protocol.Header))
			}
			for _, h := range tt.header {
				if got := r.get(protocol.Header); !strings.Contains(got, h) {
					t.Errorf("header %q lacks %q", got, h)
				}
			}
		})
	}
}

// TestNoProcessSurvives: children left in the command's group are killed,
// both when the command exits and when it is interrupted.
func TestNoProcessSurvives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		script    string
		interrupt bool
	}{
		{"exits", "sleep 1000 & echo pid=$!", false},
		{"interrupted", "sleep 1000 & echo pid=$!; wait", true},
		{"grandchild", "sh -c 'sleep 1000 & echo pid=$!; wait' & wait", true},
	}
	e := NewExecutor(t.TempDir(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := newRecorder("\n")
			if tt.interrupt {
				go func() {
					select {
					case <-r.seen:
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			res := run(t, ctx, e, &protocol.ShellCommand{Script: tt.script}, r)
			if res.Interrupted != tt.interrupt || res.Err != "" {
				t.Errorf("result = %+v", res)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(r.get(protocol.Stdout), "pid=")))
			if err != nil {
				t.Fatalf("stdout %q: %v", r.get(protocol.Stdout), err)
			}
			if alive(pid) {
				t.Errorf("background process %d survived its command", pid)
			}
		})
	}
}

// alive reports whether pid is a running process. A zombie (dead, not yet
// reaped by its new parent) is not running. Killing is asynchronous, so
// give the kernel a moment.
func alive(pid int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return false
		}
		if runtime.GOOS == "linux" {
			stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil {
				return false
			}
			// pid (comm) STATE ...
			if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
				return false
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// TestStreaming: output arrives while the command still runs.
func TestStreaming(t *testing.T) {
	t.Parallel()
	e := NewExecutor(t.TempDir(), nil)
	ctx, cancel := context.WithCancel(t.Context())
	r := newRecorder("first")
	done := make(chan protocol.Result, 1)
	go func() {
		done <- e.Run(ctx, protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: "echo first; echo err >&2; sleep 1000"}}, r.out)
	}()
	<-r.seen // would hang if output were only sent at the end
	cancel()
	if res := <-done; !res.Interrupted {
		t.Errorf("result = %+v, want interrupted", res)
	}
}
