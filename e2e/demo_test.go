package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is an output buffer the test reads while a process writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemo runs `make demo`'s script, the README's first command, as a new
// user would: it must come up, build its sample project from the force it
// makes and from a commit, print commands that work as printed, and stop
// both programs on Ctrl-C.
func TestDemo(t *testing.T) {
	t.Parallel()
	master, _ := buildBinaries(t)
	webPort, workerPort := freePort(t), freePort(t)
	dir := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	cmd.Env = append(cmd.Environ(),
		"GBB_DEMO_BIN="+filepath.Dir(master),
		"GBB_DEMO_DIR="+dir,
		"GBB_DEMO_WEB_PORT="+strconv.Itoa(webPort),
		"GBB_DEMO_WORKER_PORT="+strconv.Itoa(workerPort),
	)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "master", "master.log"))
			t.Logf("the demo's output:\n%s\nmaster.log:\n%s", out.String(), log)
		}
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})

	waitFor(t, "the demo to come up", 2*time.Minute, func() bool {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("the demo exited before it was up: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "Press Ctrl-C to stop.")
	})
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v2", webPort)
	builds := func() []apiBuild {
		t.Helper()
		resp, err := http.Get(api + "/builds?order=buildid")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct{ Builds []apiBuild }
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v.Builds
	}
	succeeded := func(n int) func() bool {
		return func() bool {
			bs := builds()
			if len(bs) < n {
				return false
			}
			for _, b := range bs[:n] {
				if !b.Complete {
					return false
				}
				if *b.Results != 0 {
					t.Fatalf("build %d: results %d (%s)\n%s", b.Number, *b.Results, b.StateString, out.String())
				}
			}
			return true
		}
	}
	// The demo's own force.
	waitFor(t, "the demo's forced build", 2*time.Minute, succeeded(1))

	// The force command it prints, run as printed.
	text := out.String()
	i := strings.Index(text, "force:")
	j := strings.Index(text, "commit:")
	if i < 0 || j < i {
		t.Fatalf("no force command in the demo's message:\n%s", text)
	}
	force := strings.TrimSpace(text[i+len("force:") : j])
	if o, err := exec.Command("bash", "-c", force).CombinedOutput(); err != nil || !strings.Contains(string(o), `"result"`) {
		t.Fatalf("the printed force command %q: %v\n%s", force, err, o)
	}
	waitFor(t, "the printed force's build", 2*time.Minute, succeeded(2))

	// The commit command it prints: the poller builds it. (A commit made
	// before the poller's first poll is its starting point, as buildbot's
	// GitPoller's, so wait for that poll as a person reading the log would.)
	waitFor(t, "the poller's first poll", 2*time.Minute, func() bool {
		log, _ := os.ReadFile(filepath.Join(dir, "master", "master.log"))
		return strings.Contains(string(log), "first poll")
	})
	k := strings.Index(text, "logs:")
	commit := strings.TrimSpace(text[j+len("commit:") : k])
	commit = strings.TrimSpace(commit[:strings.Index(commit, "(")])
	if o, err := exec.Command("bash", "-c", commit).CombinedOutput(); err != nil {
		t.Fatalf("the printed commit command %q: %v\n%s", commit, err, o)
	}
	waitFor(t, "the commit's build", 2*time.Minute, succeeded(3))

	// Ctrl-C stops both programs.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-done:
		stopped = true
	case <-time.After(time.Minute):
		t.Fatalf("the demo did not stop on Ctrl-C\n%s", out.String())
	}
	if !strings.Contains(out.String(), "stopped; basedirs kept in") {
		t.Errorf("the demo's stop message is missing:\n%s", out.String())
	}
	if _, err := http.Get(api + "/builders"); err == nil {
		t.Error("the master still answers after Ctrl-C")
	}
}
