package config

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// Four more worker steps, as buildbot's, built on the commands the worker
// already runs (shell, download, upload):
//
//   - shell_sequence (ShellSequence): commands, an array of tables, each a
//     command (argv or string, as a shell step's) with its own log,
//     logname (default "stdio" for the first command, "stdio-N" for the
//     Nth after it; unique in the step), and halt_on_failure (default
//     false), flunk_on_failure (default true), warn_on_failure
//     (default false), warn_on_warnings and flunk_on_warnings (default
//     false), which say what its failure or warnings do to the step, as
//     buildbot's ShellArg: the step's result is the worst of the commands'
//     so weighed, and a command that fails with halt_on_failure ends the
//     sequence (an exception, a retry or a cancel always does). A command
//     that renders empty is skipped, as buildbot's shouldRunTheCommand
//     skips it. The step's env (the builder's under it), decode_rc,
//     timeout and max_time apply to each command.
//   - json_string_download (JSONStringDownload): s, any TOML value (its
//     strings rendered), written as JSON to workerdest; mode.
//   - json_properties_download (JSONPropertiesDownload): the build's
//     properties and source stamps, as JSON in buildbot's shape
//     ({"properties": {...}, "sourcestamps": [{"branch", "revision",
//     "repository", "project", "codebase", "patch_*"}]}), written to
//     workerdest; mode.
//   - multiple_file_upload (MultipleFileUpload): each of workersrcs (files
//     or directories, relative to the workdir) uploaded into the
//     directory masterdest under its base name, a directory as a
//     directory_upload does; with glob, each is a pattern (path.Match
//     syntax) expanded on the worker, and none matching is SKIPPED, as in
//     buildbot; max_size, mode and blocksize apply to each.

// ShellArg is one command of a shell_sequence, as buildbot's ShellArg.
type ShellArg struct {
	Command        Command // command: required
	LogName        string  // logname: its log; see above for the default
	HaltOnFailure  bool    // halt_on_failure: a failure ends the sequence; default false
	FlunkOnFailure bool    // flunk_on_failure: a failure makes the step FAILURE; default true
	WarnOnFailure  bool    // warn_on_failure: a failure makes the step WARNINGS (flunk_on_failure wins); default false
	// WarnOnWarnings is warn_on_warnings: a command that ends WARNINGS
	// (through the step's decode_rc) makes the step WARNINGS; default
	// false, as buildbot's ShellArg: such a command counts as a success.
	WarnOnWarnings bool
	// FlunkOnWarnings is flunk_on_warnings: a command that ends WARNINGS
	// makes the step FAILURE (it wins over warn_on_warnings); default false.
	FlunkOnWarnings bool
	Line            int // line of the table
}

// moreStep reads the keys of the step types of this file. local reads a
// required path that must stay under its directory.
func (d *decoder) moreStep(t *table, s *Step, local func(string) string) {
	switch s.Type {
	case "shell_sequence":
		d.shellSequence(t, s)
		d.decodeRC(t, s)
	case "json_string_download":
		v, ok := t.get("s")
		if !ok {
			t.errorf("s", "required for a json_string_download step")
		} else {
			s.Value = v
			d.checkTemplates(t.path.key("s"), v)
		}
		s.WorkerDest = local("workerdest")
	case "json_properties_download":
		s.WorkerDest = local("workerdest")
	case "multiple_file_upload":
		s.Glob, _ = t.boolean("glob")
		if !t.has("workersrcs") {
			t.errorf("workersrcs", "required for a multiple_file_upload step")
		} else if srcs, ok := t.strings("workersrcs"); ok {
			k := t.path.key("workersrcs")
			for i, p := range srcs {
				switch {
				case !filepath.IsLocal(p):
					d.errorAt(k.index(i), k, "path %q is absolute or leaves its directory", p)
				case path.Base(p) == "." || path.Base(p) == "..":
					d.errorAt(k.index(i), k, "path %q: its base name %q would upload into masterdest itself or its parent; name a file or directory", p, path.Base(p))
				case s.Glob:
					if _, err := path.Match(p, ""); err != nil || !shellSafeBrackets(p) {
						d.errorAt(k.index(i), k, "bad pattern %q (a bracket expression may hold letters, digits, '.', '_' and '-', after a ^)", p)
					}
				}
			}
			s.WorkerSrcs = srcs
		}
		s.MasterDest = local("masterdest")
		d.masterPath(t, s, "masterdest", s.MasterDest, true)
	}
}

func (d *decoder) shellSequence(t *table, s *Step) {
	if !t.has("commands") {
		t.errorf("commands", "required for a shell_sequence step")
		return
	}
	cmds := t.tables("commands")
	if len(cmds) == 0 {
		t.errorf("commands", "must not be empty")
		return
	}
	seen := map[string]int{}
	for i, c := range cmds {
		a := ShellArg{Line: c.line(), FlunkOnFailure: true, LogName: "stdio"}
		if i > 0 {
			a.LogName = "stdio-" + strconv.Itoa(i+1)
		}
		if v, ok := c.get("command"); !ok {
			c.errorf("command", "required")
		} else if cmd, err := parseCommand(v); err != nil {
			c.errorf("command", "%v", err)
		} else {
			a.Command = cmd
			d.checkTemplates(c.path.key("command"), cmd)
		}
		if c.has("logname") {
			if n, ok := c.required("logname"); ok {
				a.LogName = n
				d.checkTemplates(c.path.key("logname"), n)
			}
		}
		if first, dup := seen[a.LogName]; dup {
			c.errorf("logname", "%s", fmt.Sprintf("log %q is already command %d's", a.LogName, first+1))
		} else {
			seen[a.LogName] = i
		}
		if b, ok := c.boolean("halt_on_failure"); ok {
			a.HaltOnFailure = b
		}
		if b, ok := c.boolean("flunk_on_failure"); ok {
			a.FlunkOnFailure = b
		}
		a.WarnOnFailure, _ = c.boolean("warn_on_failure")
		a.WarnOnWarnings, _ = c.boolean("warn_on_warnings")
		a.FlunkOnWarnings, _ = c.boolean("flunk_on_warnings")
		c.done()
		s.Commands = append(s.Commands, a)
	}
}

// renderShellArgs renders the command and log name of each of v.
func renderShellArgs(v []ShellArg, f func(string) (string, error)) (any, error) {
	if v == nil {
		return v, nil
	}
	out := make([]ShellArg, len(v))
	for i, a := range v {
		c, err := renderValue(a.Command, f)
		if err != nil {
			return nil, err
		}
		a.Command = c.(Command)
		if a.LogName, err = f(a.LogName); err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// shellSafeBrackets reports whether the bracket expressions of the
// pattern p hold only what sh takes as path.Match does: letters, digits,
// '.', '_' and '-' (ranges), after an optional '^'; and no backslash.
func shellSafeBrackets(p string) bool {
	if strings.ContainsRune(p, '\\') {
		return false
	}
	for {
		i := strings.IndexByte(p, '[')
		if i < 0 {
			return true
		}
		j := strings.IndexByte(p[i:], ']')
		if j < 0 {
			return false
		}
		inner := strings.TrimPrefix(p[i+1:i+j], "^")
		for _, c := range inner {
			if !unicode.IsLetter(c) && !unicode.IsDigit(c) && !strings.ContainsRune("._-", c) {
				return false
			}
		}
		p = p[i+j+1:]
	}
}
