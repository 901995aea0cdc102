package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/google/go-cmp/cmp"
)

// logRecorder collects a command's output by stream and by logfile name.
type logRecorder struct {
	mu   sync.Mutex
	logs map[string]*strings.Builder // stream name, or "log:NAME"
}

func (r *logRecorder) out(o protocol.Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := o.Stream.String()
	if o.Stream == protocol.LogFile {
		k = "log:" + o.Log
	}
	if r.logs == nil {
		r.logs = map[string]*strings.Builder{}
	}
	if r.logs[k] == nil {
		r.logs[k] = &strings.Builder{}
	}
	r.logs[k].Write(o.Data)
}

func (r *logRecorder) get(k string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logs[k] == nil {
		return ""
	}
	return r.logs[k].String()
}

func TestWantStdoutStderr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		noStdout, noStderr bool
		stdout, stderr     string
	}{
		{"both", false, false, "out\n", "err\n"},
		{"no stdout", true, false, "", "err\n"},
		{"no stderr", false, true, "out\n", ""},
		{"neither", true, true, "", ""},
	}
	e := NewExecutor(t.TempDir(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r logRecorder
			res := e.Run(t.Context(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{
				Script: "echo out; echo err >&2; exit 3", NoStdout: tt.noStdout, NoStderr: tt.noStderr,
			}}, r.out)
			if res.ExitCode != 3 {
				t.Errorf("exit code %d, want 3", res.ExitCode)
			}
			if got := r.get("stdout"); got != tt.stdout {
				t.Errorf("stdout %q, want %q", got, tt.stdout)
			}
			if got := r.get("stderr"); got != tt.stderr {
				t.Errorf("stderr %q, want %q", got, tt.stderr)
			}
		})
	}
}

func TestInterruptSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		sh     protocol.ShellCommand
		res    protocol.Result
		header string
	}{
		{
			name: "INT obeyed",
			sh:   protocol.ShellCommand{Script: "trap 'exit 5' INT; echo started; while :; do sleep 0.05; done", InterruptSignal: "INT"},
			res:  protocol.Result{ExitCode: 5, Interrupted: true},
		},
		{
			name:   "INT ignored, KILL after sigterm_time",
			sh:     protocol.ShellCommand{Script: "trap '' INT; echo started; while :; do sleep 0.05; done", InterruptSignal: "INT", SigtermTime: 100 * time.Millisecond},
			res:    protocol.Result{ExitCode: -1, Signal: "KILL", Interrupted: true},
			header: "SIGINT did not stop the command within 0.1 secs, sending SIGKILL",
		},
		{
			name:   "TERM kills",
			sh:     protocol.ShellCommand{Script: "echo started; sleep 1000", InterruptSignal: "TERM"},
			res:    protocol.Result{ExitCode: -1, Signal: "TERM", Interrupted: true},
			header: "process killed by signal 15",
		},
	}
	e := NewExecutor(t.TempDir(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := newRecorder("started")
			go func() {
				select {
				case <-r.seen:
					cancel()
				case <-ctx.Done():
				}
			}()
			res := run(t, ctx, e, &tt.sh, r)
			if diff := cmp.Diff(tt.res, res, ignoreElapsed); diff != "" {
				t.Errorf("result (-want +got):\n%s\nheader:\n%s", diff, r.get(protocol.Header))
			}
			if got := r.get(protocol.Header); !strings.Contains(got, tt.header) {
				t.Errorf("header %q lacks %q", got, tt.header)
			}
		})
	}
}

func TestLogfiles(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	wd := filepath.Join(base, "b", "build")
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	// A file left from before the command is not sent until it changes.
	if err := os.WriteFile(filepath.Join(wd, "old.log"), []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wd, "kept.log"), []byte("untouched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := NewExecutor(base, nil)
	var r logRecorder
	res := e.Run(t.Context(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{
		Workdir: "build",
		Script:  "mkdir -p sub; echo one > sub/test.log; sleep 0.5; echo two >> sub/test.log; echo new > old.log; echo done",
		Logfiles: map[string]string{
			"test": "sub/test.log", "old": "old.log", "kept": "kept.log", "never": "missing.log",
		},
	}}, r.out)
	if res.ExitCode != 0 || res.Err != "" {
		t.Fatalf("result %+v\n%s", res, r.get("header"))
	}
	for k, want := range map[string]string{
		"log:test": "one\ntwo\n", "log:old": "new\n", "log:kept": "", "log:never": "", "stdout": "done\n",
	} {
		if got := r.get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if h := r.get("header"); !strings.Contains(h, " watching logfiles {'kept': 'kept.log', 'never': 'missing.log', 'old': 'old.log', 'test': 'sub/test.log'}\n") {
		t.Errorf("header lacks the logfiles:\n%s", h)
	}

	// A logfile path may not leave the workdir.
	for _, p := range []string{"../x.log", "/etc/passwd"} {
		var r logRecorder
		res := e.Run(t.Context(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{
			Script: "true", Logfiles: map[string]string{"x": p},
		}}, r.out)
		if res.ExitCode != -1 || !strings.Contains(res.Err, "escapes the workdir") {
			t.Errorf("logfile %q: result %+v, want refused", p, res)
		}
	}
}
