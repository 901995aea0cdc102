package bbimport

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// dumpPy is the Python program that loads a master.cfg with buildbot's
// FileLoader and prints the loaded config as JSON.
//
//go:embed dump.py
var dumpPy []byte

// DefaultPython is the interpreter Debian's buildbot package is for.
const DefaultPython = "/usr/bin/python3"

// ErrNoBuildbot is returned when the Python interpreter cannot import
// buildbot.
var ErrNoBuildbot = errors.New("buildbot is not installed")

// LoadError is returned when buildbot refuses the master.cfg: Msg is
// buildbot's own error text.
type LoadError struct{ Msg string }

func (e *LoadError) Error() string { return e.Msg }

// Load runs buildbot's loader on the master.cfg at path with the Python
// interpreter python ("" means DefaultPython) and returns the JSON it
// printed, decoded (numbers as json.Number).
func Load(ctx context.Context, python, path string) (map[string]any, error) {
	if python == "" {
		python = DefaultPython
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(python); err != nil {
		return nil, fmt.Errorf("%w: no Python interpreter %s (%v); install buildbot 3.x with its Python (on Debian: apt-get install buildbot)", ErrNoBuildbot, python, err)
	}
	// -c: no script file to write, and no directory of one on sys.path.
	cmd := exec.CommandContext(ctx, python, "-c", string(dumpPy), abs)
	// buildbot's loader reads master.cfg relative to its basedir; run it
	// there, as `buildbot checkconfig` does.
	cmd.Dir = filepath.Dir(abs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		return nil, fmt.Errorf("%w: %s; install buildbot 3.x for %s (on Debian: apt-get install buildbot)", ErrNoBuildbot, strings.TrimSpace(stderr.String()), python)
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return nil, &LoadError{Msg: strings.TrimSpace(stderr.String())}
	case err != nil:
		return nil, fmt.Errorf("run buildbot's loader: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("read buildbot's loaded config: %w", err)
	}
	return out, nil
}
