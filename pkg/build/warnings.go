package build

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// warningCounter counts the warning lines of a shell step's stdout and
// stderr, as buildbot's WarningCountingShellCommand: a line matching
// warning_pattern is a warning unless a suppress entry matches it.
type warningCounter struct {
	pattern  *regexp.Regexp
	suppress []suppression
	rules    string // warningRules of the step

	mu       sync.Mutex
	partial  [2][]byte // guarded by mu; the unfinished last line of stdout and stderr
	warnings []string  // guarded by mu
}

type suppression struct {
	file, line *regexp.Regexp // file nil: any file
}

// newWarningCounter returns the counter of sc's warnings, or nil when sc
// counts none. The patterns were checked when the config was loaded.
func newWarningCounter(sc config.Step) *warningCounter {
	if sc.WarningPattern == "" {
		return nil
	}
	w := &warningCounter{pattern: regexp.MustCompile(sc.WarningPattern), rules: warningRules(sc)}
	for _, s := range sc.Suppress {
		sup := suppression{line: regexp.MustCompile(s.Regex)}
		if s.File != "" {
			sup.file = regexp.MustCompile(s.File)
		}
		w.suppress = append(w.suppress, sup)
	}
	return w
}

// state returns the counter's state, for a resume point; nil w gives
// nil.
func (w *warningCounter) state() *store.WarningState {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &store.WarningState{Rules: w.rules, Lines: make([][]byte, len(w.warnings))}
	for i, l := range w.warnings {
		st.Lines[i] = []byte(l)
	}
	for i, p := range w.partial {
		st.Partial[i] = bytes.Clone(p)
	}
	return st
}

// warningRules names what a step counts as warnings: its warning_pattern
// and suppress entries; "" when it counts none. A resume point's counter
// state goes on only under the same rules.
func warningRules(sc config.Step) string {
	if sc.WarningPattern == "" {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%q", sc.WarningPattern)
	for _, s := range sc.Suppress {
		fmt.Fprintf(&b, " %q:%q", s.File, s.Regex)
	}
	return b.String()
}

// resumeWarningCounter returns the counter of sc's warnings that goes on
// from st, the state a resume point kept; nil when sc counts none. The
// caller checked that st was counted with sc's rules.
func resumeWarningCounter(sc config.Step, st *store.WarningState) *warningCounter {
	w := newWarningCounter(sc)
	if w == nil || st == nil {
		return w
	}
	for _, l := range st.Lines {
		w.warnings = append(w.warnings, string(l))
	}
	for i, p := range st.Partial {
		w.partial[i] = bytes.Clone(p)
	}
	return w
}

// output takes a chunk of the command's output; nil w takes nothing.
func (w *warningCounter) output(o protocol.Output) {
	if w == nil {
		return
	}
	idx := 0
	switch o.Stream {
	case protocol.Stdout:
	case protocol.Stderr:
		idx = 1
	default:
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	data := o.Data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			w.partial[idx] = append(w.partial[idx], data...)
			if len(w.partial[idx]) >= maxLineLength {
				w.lineLocked(string(w.partial[idx]))
				w.partial[idx] = w.partial[idx][:0]
			}
			return
		}
		line := string(append(w.partial[idx], data[:i]...))
		w.partial[idx] = w.partial[idx][:0]
		w.lineLocked(line)
		data = data[i+1:]
	}
}

func (w *warningCounter) lineLocked(line string) {
	line = strings.TrimSuffix(line, "\r")
	if !w.pattern.MatchString(line) {
		return
	}
	for _, s := range w.suppress {
		if !s.line.MatchString(line) {
			continue
		}
		if s.file == nil {
			return
		}
		if file, _, ok := strings.Cut(line, ":"); ok && s.file.MatchString(file) {
			return
		}
	}
	w.warnings = append(w.warnings, line)
}

// end takes the unfinished last lines as lines and returns the warnings.
func (w *warningCounter) end() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.partial {
		if len(p) > 0 {
			w.lineLocked(string(p))
			w.partial[i] = nil
		}
	}
	return w.warnings
}

// warningResults writes the warnings of a shell step that counts them into
// its "warnings (N)" log, adds their count to the build's warnings-count
// property (as buildbot), and returns the step's result: a command that
// succeeded is WARNINGS when it printed warnings, FAILURE when more than
// max_warn_count.
func (b *build) warningResults(step store.Step, sc config.Step, w *warningCounter, results int) int {
	if w == nil {
		return results
	}
	warnings := w.end()
	n := len(warnings)
	if n > 0 {
		b.writeText(step, fmt.Sprintf("warnings (%d)", n), strings.Join(warnings, "\n"))
	}
	old := 0
	if v, ok := propertyValue(b.currentProperties()["warnings-count"]).(int64); ok {
		old = int(v)
	}
	b.setProperty("warnings-count", old+n, "WarningCountingShellCommand")
	if results != store.Success && results != store.Warnings {
		return results
	}
	switch {
	case sc.MaxWarnCount != nil && n > *sc.MaxWarnCount:
		return store.Failure
	case n > 0:
		return store.Warnings
	}
	return results
}

// tapOutput returns out preceded by each non-nil tap.
func tapOutput(out func(protocol.Output), taps []func(protocol.Output)) func(protocol.Output) {
	var live []func(protocol.Output)
	for _, t := range taps {
		if t != nil {
			live = append(live, t)
		}
	}
	if len(live) == 0 {
		return out
	}
	return func(o protocol.Output) {
		for _, t := range live {
			t(o)
		}
		out(o)
	}
}
