package worker

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsHiddenInWhatTheWorkerWrites: a command holding a secret runs
// with it, but the worker's log, the header lines and the record of the
// running command show "<token>" instead; a command that cannot start
// fails with the secret hidden too.
func TestSecretsHiddenInWhatTheWorkerWrites(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-va1ue-42"
	basedir := t.TempDir()
	logs := &lockedBuffer{}
	e := NewExecutor(basedir, slog.New(slog.NewTextHandler(logs, nil)))
	secrets := []protocol.Secret{{Value: secret, Name: "token"}}

	// Killed: its argv in the log and in the record of its group.
	r := newRecorder("ready")
	done := make(chan protocol.Result, 1)
	go func() {
		done <- e.Run(t.Context(), protocol.Command{Builder: "b", Secrets: secrets, Shell: &protocol.ShellCommand{
			Argv: []string{"sh", "-c", `echo "$1" > got; echo ready; sleep 60`, "sh", secret}, Timeout: 2 * time.Second,
		}}, r.out)
	}()
	select {
	case <-r.seen:
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not start")
	}
	recs, err := os.ReadDir(filepath.Join(basedir, RunningDir))
	if err != nil || len(recs) != 1 {
		t.Fatalf("records of running commands: %v, %v; want one", recs, err)
	}
	rec, err := os.ReadFile(filepath.Join(basedir, RunningDir, recs[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	var rr runningRecord
	if err := json.Unmarshal(rec, &rr); err != nil {
		t.Fatal(err)
	}
	if len(rr.Argv) != 5 || rr.Argv[4] != "<token>" || strings.Contains(string(rec), secret) {
		t.Errorf("the record of the running command does not hide the secret: %s", rec)
	}
	res := <-done
	if !res.TimedOut {
		t.Fatalf("result %+v, want timed out", res)
	}
	if got, _ := os.ReadFile(filepath.Join(basedir, "b", "got")); string(got) != secret+"\n" {
		t.Errorf("the command got %q, want the secret itself", got)
	}

	// Cannot start.
	r2 := newRecorder("")
	res = e.Run(t.Context(), protocol.Command{Builder: "b", Secrets: secrets, Shell: &protocol.ShellCommand{
		Argv: []string{"./no-such-" + secret},
	}}, r2.out)
	if res.Err == "" || !strings.Contains(res.Err, "no-such-<token>") || strings.Contains(res.Err, secret) {
		t.Errorf("Err = %q, want the failure with the secret hidden", res.Err)
	}

	log := logs.String()
	if !strings.Contains(log, "killing command") || !strings.Contains(log, "<token>") {
		t.Errorf("the worker's log does not show the killed command hidden:\n%s", log)
	}
	for what, text := range map[string]string{"log": log, "header": r.get(protocol.Header) + r2.get(protocol.Header)} {
		if strings.Contains(text, secret) {
			t.Errorf("the %s holds the secret:\n%s", what, text)
		}
	}
}

// TestReaperHidesURLPasswords: records an older worker left hold argv as
// it was; what the reaper logs of them has URL passwords hidden.
func TestReaperHidesURLPasswords(t *testing.T) {
	t.Parallel()
	const url = "https://ci:hunter2-pw@git.example/r.git"
	basedir := t.TempDir()
	dir := filepath.Join(basedir, RunningDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A group that is gone: a process that ran and was waited for.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	pid := gone.Process.Pid
	rec, err := json.Marshal(runningRecord{Pgid: pid, Start: 1, Boot: "b", Builder: "b", Argv: []string{"git", "fetch", url}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(pid)), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "1"), []byte(`{"pgid": 0, "argv": ["`+url+`"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	if err := ReapOrphans(basedir, slog.New(slog.NewTextHandler(logs, nil))); err != nil {
		t.Fatal(err)
	}
	log := logs.String()
	if strings.Contains(log, "hunter2-pw") || strings.Count(log, "https://ci:xxxx@git.example/r.git") != 2 {
		t.Errorf("the reaper's log does not hide the URL password in both records:\n%s", log)
	}
}
