package testbin

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Flags returns the go build flags `make build` uses, read from the
// Makefile in root (its TAGS and LDFLAGS, and -trimpath), with -race
// added when the test binary runs with the race detector. version stands
// for $(VERSION).
func Flags(root, version string) ([]string, error) {
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return nil, fmt.Errorf("read the Makefile: %w", err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(mk))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " := ")
		if ok && (name == "TAGS" || name == "LDFLAGS") {
			vars[name] = strings.TrimSpace(value)
		}
	}
	tags, ok1 := vars["TAGS"]
	ldflags, ok2 := vars["LDFLAGS"]
	if !ok1 || !ok2 || !bytes.Contains(mk, []byte("-trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)'")) {
		return nil, fmt.Errorf("the Makefile's build lines changed: teach testbin.Flags to read them")
	}
	ldflags = strings.ReplaceAll(ldflags, "$(VERSION)", version)
	flags := []string{"-trimpath", "-tags", tags, "-ldflags", ldflags}
	if Race {
		flags = append(flags, "-race")
	}
	return flags, nil
}

// Env returns the environment of the go build of Build: CGO_ENABLED=0 as
// `make build`, but 1 under the race detector, which needs cgo.
func Env() []string {
	cgo := "CGO_ENABLED=0"
	if Race {
		cgo = "CGO_ENABLED=1"
	}
	return append(os.Environ(), cgo)
}

// Build builds ./cmd/master and ./cmd/worker of the module in root into
// dir, as gbb-master and gbb-worker, and returns their paths.
func Build(root, dir string) (master, worker string, err error) {
	flags, err := Flags(root, "test")
	if err != nil {
		return "", "", err
	}
	for _, b := range []string{"master", "worker"} {
		out := filepath.Join(dir, "gbb-"+b)
		cmd := exec.Command("go", slices.Concat([]string{"build"}, flags, []string{"-o", out, "./cmd/" + b})...)
		cmd.Dir = root
		cmd.Env = Env()
		if o, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b, err, o)
		}
	}
	return filepath.Join(dir, "gbb-master"), filepath.Join(dir, "gbb-worker"), nil
}

// Races collects the reports of the race detector in the processes that
// inherit the environment variable its Setenv sets: each process writes
// its reports to a file of its own in one directory (GORACE log_path),
// whether it runs in the foreground or as a daemon, whatever it does with
// its stderr.
type Races struct {
	dir string

	mu   sync.Mutex
	seen map[string]bool // guarded by mu; the report files New returned
}

// NewRaces returns the collector of the reports written in dir.
func NewRaces(dir string) *Races {
	return &Races{dir: dir, seen: map[string]bool{}}
}

// Setenv sets GORACE in this process's environment, for the processes it
// starts from now on: their reports go to files in the collector's
// directory, and a process that found a race exits 66, the detector's
// default.
func (r *Races) Setenv() error {
	return os.Setenv("GORACE", "log_path="+filepath.Join(r.dir, "race")+" exitcode=66")
}

// New returns the reports written since the last call, each with the name
// of its file (race.PID), or nil when there is none.
func (r *Races) New() []string {
	files, _ := filepath.Glob(filepath.Join(r.dir, "race.*"))
	slices.Sort(files)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, f := range files {
		if r.seen[f] {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			// Not written yet (or not a race): look again next time.
			continue
		}
		r.seen[f] = true
		out = append(out, fmt.Sprintf("%s:\n%s", filepath.Base(f), data))
	}
	return out
}
