package config

import (
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MaxBlockSize is the largest (and the default) blocksize of a transfer.
const MaxBlockSize = 64 << 10

// Shell options, as buildbot's ShellCommand (snake_case names).
var shellOptionKeys = []string{"want_stdout", "want_stderr", "interrupt_signal", "sigterm_time", "logfiles", "decode_rc"}

// workerStepKeys are the keys of each worker file step and transfer, as
// buildbot's MakeDirectory, RemoveDirectory, FileUpload, DirectoryUpload,
// FileDownload and StringDownload.
var workerStepKeys = map[string][]string{
	"mkdir":            {"dir"},
	"rmdir":            {"dir"},
	"remove_file":      {"path"},
	"file_upload":      {"workersrc", "masterdest", "max_size", "mode", "blocksize"},
	"directory_upload": {"workersrc", "masterdest", "max_size", "blocksize"},
	"file_download":    {"mastersrc", "workerdest", "max_size", "mode", "blocksize"},
	"string_download":  {"s", "workerdest", "mode"},
	// See steps_more.go.
	"shell_sequence":           {"commands", "decode_rc"},
	"json_string_download":     {"s", "workerdest", "mode"},
	"json_properties_download": {"workerdest", "mode"},
	"multiple_file_upload":     {"workersrcs", "masterdest", "glob", "max_size", "mode", "blocksize"},
}

// WorkerStepTypes are the step types of workerStepKeys.
var WorkerStepTypes = slices.Sorted(maps.Keys(workerStepKeys))

// allWorkerStepKeys is every key of workerStepKeys, once.
func allWorkerStepKeys() []string {
	var all []string
	for _, keys := range workerStepKeys {
		all = append(all, keys...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// resultNames are buildbot's result names, as decode_rc takes them.
var resultNames = []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}

// signalNames are the signals interrupt_signal may name.
var signalNames = []string{"ABRT", "ALRM", "HUP", "INT", "KILL", "QUIT", "TERM", "USR1", "USR2"}

// shellOptions reads a shell step's options: want_stdout and want_stderr
// (default true), interrupt_signal (a signal name, with or without "SIG"),
// sigterm_time, logfiles (name = path relative to the workdir) and
// decode_rc (exit code = result name; TOML keys are strings: { "1" =
// "warnings" }).
func (d *decoder) shellOptions(t *table, s *Step) {
	if b, ok := t.boolean("want_stdout"); ok {
		s.DropStdout = !b
	}
	if b, ok := t.boolean("want_stderr"); ok {
		s.DropStderr = !b
	}
	if sig, ok := t.str("interrupt_signal"); ok {
		name := strings.TrimPrefix(strings.ToUpper(sig), "SIG")
		if slices.Contains(signalNames, name) {
			s.InterruptSignal = name
		} else {
			t.errorf("interrupt_signal", "unknown signal %q (want one of %s)", sig, strings.Join(signalNames, ", "))
		}
	}
	s.SigtermTime, _ = t.duration("sigterm_time")
	if lf, ok := t.sub("logfiles"); ok {
		s.Logfiles = map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(lf.m)) {
			p, ok := lf.str(name)
			switch {
			case !ok:
			case name == "stdio":
				lf.errorf(name, "a logfile cannot be named stdio (the command's own log)")
			case !filepath.IsLocal(p):
				lf.errorf(name, "path %q is absolute or leaves the workdir", p)
			default:
				s.Logfiles[name] = p
			}
		}
		lf.done()
	}
	d.decodeRC(t, s)
}

// decodeRC reads decode_rc (exit code = result name; TOML keys are
// strings: { "1" = "warnings" }).
func (d *decoder) decodeRC(t *table, s *Step) {
	if rc, ok := t.sub("decode_rc"); ok {
		s.DecodeRC = map[int]string{}
		for _, code := range slices.Sorted(maps.Keys(rc.m)) {
			name, ok := rc.str(code)
			if !ok {
				continue
			}
			n, err := strconv.Atoi(code)
			if err != nil {
				rc.errorf(code, "exit code %q is not an integer", code)
				continue
			}
			if !slices.Contains(resultNames, strings.ToLower(name)) {
				rc.errorf(code, "unknown result %q (want one of %s)", name, strings.Join(resultNames, ", "))
				continue
			}
			s.DecodeRC[n] = strings.ToLower(name)
		}
		rc.done()
	}
}

// workerStep reads the keys of a worker file step or transfer and returns
// the keys of the other step types, which it may not have.
func (d *decoder) workerStep(t *table, s *Step) (other []string) {
	mine := workerStepKeys[s.Type]
	for _, k := range allWorkerStepKeys() {
		if !slices.Contains(mine, k) {
			other = append(other, k)
		}
	}
	other = append(other, shellKeys...)
	other = append(other, gitKeys...)
	other = append(other, triggerKeys...)
	other = slices.DeleteFunc(other, func(k string) bool { return slices.Contains(mine, k) }) // git's mode

	// local reads a required path that must stay under the directory it is
	// relative to.
	local := func(name string) string {
		p, ok := t.required(name)
		if ok && !filepath.IsLocal(p) {
			t.errorf(name, "path %q is absolute or leaves its directory", p)
		}
		return p
	}
	switch s.Type {
	case "mkdir", "rmdir":
		s.Dir = local("dir")
		if s.Type == "rmdir" && filepath.Clean(s.Dir) == "." {
			t.errorf("dir", "would remove the builder's directory itself")
		}
	case "remove_file":
		s.Path = local("path")
	case "file_upload", "directory_upload":
		s.WorkerSrc = local("workersrc")
		s.MasterDest = local("masterdest")
		d.masterPath(t, s, "masterdest", s.MasterDest, true)
	case "file_download":
		s.MasterSrc = local("mastersrc")
		s.WorkerDest = local("workerdest")
		d.masterPath(t, s, "mastersrc", s.MasterSrc, false)
	case "shell_sequence", "json_string_download", "json_properties_download", "multiple_file_upload":
		d.moreStep(t, s, local)
	case "string_download":
		if !t.has("s") {
			t.errorf("s", "required for a string_download step")
		}
		s.Content, _ = t.str("s")
		s.WorkerDest = local("workerdest")
	}
	if n, ok := t.integer("max_size"); ok {
		if n < 0 {
			t.errorf("max_size", "must not be negative")
		} else {
			s.MaxSize = n
		}
	}
	s.BlockSize = MaxBlockSize
	if n, ok := t.integer("blocksize"); ok {
		if n <= 0 {
			t.errorf("blocksize", "must be positive")
		} else {
			s.BlockSize = int(min(n, MaxBlockSize))
		}
	}
	if v, ok := t.get("mode"); ok {
		switch v := v.(type) {
		case int64:
			if v < 0 || v > 0o7777 {
				t.errorf("mode", "%#o is not a file mode (0 to 0o7777)", v)
			} else {
				s.FileMode = int(v)
			}
		case string:
			n, err := strconv.ParseUint(strings.TrimPrefix(v, "0o"), 8, 32)
			if err != nil || n > 0o7777 {
				t.errorf("mode", "%q is not an octal file mode such as \"0755\"", v)
			} else {
				s.FileMode = int(n)
			}
		default:
			t.errorf("mode", "expected an integer (0o755) or an octal string (\"0755\"), got %s", typeName(v))
		}
	}
	return other
}

// masterPath records a transfer's master path for checkMasterPaths.
func (d *decoder) masterPath(t *table, s *Step, key, p string, write bool) {
	if p == "" || !filepath.IsLocal(p) {
		return // reported already
	}
	name := s.Name
	if name == "" {
		name = s.Type
	}
	d.masterPaths = append(d.masterPaths, masterPathRef{at: t.path.key(key), step: name, path: p, write: write})
}
