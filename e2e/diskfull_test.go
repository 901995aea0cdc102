package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

const diskFullConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["flood", "quick", "upload"]

[[builders]]
name = "flood"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "flood"
  # Random text compresses little: about 12 MB stored, more than fits.
  command = "head -c 12000000 /dev/urandom | base64 -w 1000"

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "hello"
  command = "echo hello from quick"

[[builders]]
name = "upload"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "make"
  command = "head -c 4000000 /dev/urandom > big.bin"
  [[builders.steps]]
  type = "file_upload"
  name = "upload"
  workersrc = "big.bin"
  masterdest = "artifacts/big.bin"
`

// Builder ids in diskFullConfig.
const (
	floodBuilder       = 1
	quickBuilderOfFull = 2
	uploadBuilder      = 3
)

// TestDiskFull runs the master with its basedir on a small tmpfs, mounted in
// a mount namespace of its own (unshare -m), and fills the disk with a
// step's output: the step ends EXCEPTION saying "no space left on device",
// the master keeps serving the API and the pages, and once space returns
// the next build passes. The store is consistent afterwards.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("TestDiskFull mounts a tmpfs in a mount namespace: it must run as root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("TestDiskFull needs unshare (Debian package util-linux): %v", err)
	}
	e := newEnv(t)
	e.writeConfig(diskFullConfig)
	mnt := filepath.Join(e.Dir, "small")
	saved := filepath.Join(e.Dir, "saved")
	for _, d := range []string{mnt, saved} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The shell runs the master in the namespace, then saves its store
	// (the tmpfs goes with the namespace) for the consistency check.
	script := `set -e
mount -t tmpfs -o size=8m gbb-diskfull "$1"
cp "$2/master.toml" "$1/"
"$3" start --nodaemon "$1" >"$4/stderr" 2>&1 || echo "exit $?" >>"$4/stderr"
cp "$1/state.db" "$1/master.log" "$4/"
`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", mnt, e.masterDir, e.master, saved)
	out, err := os.Create(filepath.Join(e.Dir, "unshare.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The namespace's view of the tmpfs, from outside it.
	inside := fmt.Sprintf("/proc/%d/root%s", cmd.Process.Pid, mnt)
	masterPid := 0
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if masterPid != 0 {
			syscall.Kill(masterPid, syscall.SIGTERM)
		}
		select {
		case err := <-done:
			if err != nil {
				b, _ := os.ReadFile(filepath.Join(e.Dir, "unshare.out"))
				t.Errorf("the namespace's shell: %v\n%s", err, b)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Errorf("the master in the namespace did not stop")
		}
	}
	t.Cleanup(stop)
	waitFor(t, "the master up on the tmpfs", 60*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(inside, "master.pid"))
		if err != nil {
			return false
		}
		masterPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if masterPid == 0 {
			return false
		}
		resp, err := http.Get(e.url("/api/v2/builders"))
		if err != nil {
			return false // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	e.startWorker("w1", "secret")

	// A build before the disk fills, to read while it is full.
	first := e.waitBuild(e.force("force", quickBuilderOfFull, "before"), 60*time.Second)
	if *first.Results != 0 {
		t.Fatalf("build before the disk filled: %+v", first)
	}
	// Leave about 2 MB free.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(inside, &fs); err != nil {
		t.Fatal(err)
	}
	free := int64(fs.Bavail) * fs.Bsize
	filler := filepath.Join(inside, "filler")
	fill := free - 2<<20
	if err := os.WriteFile(filler, make([]byte, fill), 0o644); err != nil {
		t.Fatal(err)
	}

	flood := e.waitBuild(e.force("force", floodBuilder, "fill the disk"), 120*time.Second)
	steps := e.steps(flood.BuildID)
	if len(steps) != 2 || *steps[1].Results != 4 || !strings.Contains(steps[1].StateString, "no space left on device") {
		t.Errorf("the step that filled the disk, want EXCEPTION saying no space left on device: %+v", steps)
	}
	if len(steps) == 2 {
		t.Logf("the step that filled the disk: %s", steps[1].StateString)
	}
	if *flood.Results != 4 {
		t.Errorf("the build that filled the disk, want EXCEPTION: %+v", flood)
	}

	// Still serving: the API, the pages, the earlier build's log.
	if got := e.stdio(e.steps(first.BuildID)[1].StepID); !strings.Contains(got, "ohello from quick\n") {
		t.Errorf("the earlier build's log while the disk is full:\n%s", got)
	}
	for _, p := range []string{"/", fmt.Sprintf("/builders/%d/builds/%d", floodBuilder, flood.Number), fmt.Sprintf("/api/v2/builds/%d/steps", flood.BuildID)} {
		resp, err := http.Get(e.url(p))
		if err != nil {
			t.Fatalf("GET %s with the disk full: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.HasPrefix(p, "/api/") && !json.Valid(body) {
			t.Errorf("GET %s with the disk full: %s %.300s", p, resp.Status, body)
		}
	}

	// A build forced while the disk is full is refused saying why, or
	// kept and run: it ends, SUCCESS or EXCEPTION saying why; nothing is
	// left hanging.
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"while full"}}`, quickBuilderOfFull)
	resp, err := http.Post(e.url("/api/v2/forceschedulers/force"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("force while the disk is full: %s %s", resp.Status, raw)
	var forced struct {
		Result []json.RawMessage `json:"result"`
	}
	var whileFull int64
	if resp.StatusCode == 200 && json.Unmarshal(raw, &forced) == nil && len(forced.Result) == 2 {
		var brids map[string]int64
		if err := json.Unmarshal(forced.Result[1], &brids); err != nil {
			t.Fatal(err)
		}
		whileFull = brids[fmt.Sprint(quickBuilderOfFull)]
	} else if !strings.Contains(string(raw), "no space left on device") {
		t.Errorf("force while the disk is full: %s %s, want it kept or refused saying why", resp.Status, raw)
	}
	if whileFull != 0 {
		b := e.waitBuild(whileFull, 60*time.Second)
		steps := e.steps(b.BuildID)
		why := ""
		for _, s := range steps {
			why += s.StateString + "\n"
		}
		if *b.Results != 0 && (*b.Results != 4 || !strings.Contains(why, "no space left on device")) {
			t.Errorf("build forced while the disk is full: %+v, steps:\n%s", b, why)
		}
	}

	// With a little room back (1 MB), an upload larger than that fails
	// its step, saying why, and leaves no partial file.
	if err := os.Truncate(filler, fill-1<<20); err != nil {
		t.Fatal(err)
	}
	up := e.waitBuild(e.force("force", uploadBuilder, "upload to a full disk"), 60*time.Second)
	if steps := e.steps(up.BuildID); len(steps) != 3 || *steps[2].Results != 2 || !strings.Contains(e.stdio(steps[2].StepID), "no space left on device") {
		t.Errorf("upload to the full disk, want FAILURE saying no space left on device: %+v", steps)
	} else if left, _ := os.ReadDir(filepath.Join(inside, "artifacts")); len(left) != 0 {
		t.Errorf("the failed upload left %v", left)
	}

	// Space returns: the next build passes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := e.waitBuild(e.force("force", quickBuilderOfFull, "after"), 60*time.Second)
	if *after.Results != 0 {
		t.Errorf("build after space returned: %+v", after)
	}
	if got := e.stdio(e.steps(after.BuildID)[1].StepID); !strings.Contains(got, "ohello from quick\n") {
		t.Errorf("log of the build after space returned:\n%s", got)
	}

	stop()
	db, err := store.Open(filepath.Join(saved, "state.db"), store.Options{})
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(saved, "stderr"))
		t.Fatalf("open the store the full disk left: %v\n%s", err, b)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Errorf("store after the disk was full: %v", err)
	}
}
