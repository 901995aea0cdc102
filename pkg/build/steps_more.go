package build

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// runMoreStep runs shell_sequence, json_string_download,
// json_properties_download and multiple_file_upload (see
// config/steps_more.go), on the commands every worker runs: shell,
// download and upload.
func (b *build) runMoreStep(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	desc := sc.Description
	var res int
	switch sc.Type {
	case "shell_sequence":
		return b.runShellSequence(ctx, step, sc, log)
	case "json_string_download":
		desc = orDefault(desc, "downloading to "+filepath.Base(sc.WorkerDest))
		data, err := json.Marshal(sc.Value)
		if err != nil {
			return b.failStep(step, "encode s as JSON: "+err.Error()), desc + stateSuffix(store.Failure, false)
		}
		res = b.runDownload(ctx, step, sc, bytes.NewReader(data), log)
	case "json_properties_download":
		desc = orDefault(desc, "downloading to "+filepath.Base(sc.WorkerDest))
		data, err := b.propertiesJSON()
		if err != nil {
			return b.failStep(step, err.Error()), desc + stateSuffix(store.Failure, false)
		}
		res = b.runDownload(ctx, step, sc, bytes.NewReader(data), log)
	case "multiple_file_upload":
		var n int
		res, n = b.runMultipleUpload(ctx, step, sc, log)
		files := "files"
		if n == 1 {
			files = "file"
		}
		desc = orDefault(desc, fmt.Sprintf("uploading %d %s", n, files))
	}
	return res, desc + stateSuffix(res, false)
}

// runShellSequence runs each command of a shell_sequence in its own log,
// as buildbot's ShellSequence: its failure weighed by its
// flunk_on_failure and warn_on_failure, ending the sequence with
// halt_on_failure; an exception, retry or cancel always ends it.
func (b *build) runShellSequence(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	overall := store.Success
	desc := sc.Description
	skip := func(a config.ShellArg) bool {
		return a.Command.Script == "" && len(a.Command.Argv) == 0 // buildbot's shouldRunTheCommand: bool(command)
	}
	// The config checked the log names as written; rendered, they must
	// still name one log each.
	seen := map[string]int{}
	for i, a := range sc.Commands {
		if skip(a) {
			continue
		}
		var why string
		if a.LogName == "" {
			why = fmt.Sprintf("step %q: the logname of command %d renders empty", sc.Name, i+1)
		} else if first, dup := seen[a.LogName]; dup {
			why = fmt.Sprintf("step %q: the logname of command %d renders %q, command %d's", sc.Name, i+1, a.LogName, first+1)
		}
		if why != "" {
			log.Warn("shell_sequence refused", "reason", why)
			return b.failStep(step, why), desc + stateSuffix(store.Failure, false)
		}
		seen[a.LogName] = i
	}
	for _, a := range sc.Commands {
		if skip(a) {
			continue
		}
		if sc.Description == "" {
			desc = quoteCommand(a.Command)
		}
		b.check(b.e.st.SetStepStateString(step.ID, desc))
		res, results := b.runCommandLog(ctx, step, a.LogName, protocol.Command{
			Builder: b.cfg.WorkerDir(),
			Shell: &protocol.ShellCommand{
				Argv:     a.Command.Argv,
				Script:   a.Command.Script,
				Workdir:  sc.Workdir,
				Env:      sc.Env,
				EnvLists: sc.EnvLists,
				Timeout:  sc.Timeout.Duration,
				MaxTime:  sc.MaxTime.Duration,
			},
		}, log)
		if results == resultDetached {
			return results, desc
		}
		results = decodeRC(sc.DecodeRC, res, results)
		weighed, stop := results, false
		switch results {
		case store.Failure:
			switch {
			case a.FlunkOnFailure:
			case a.WarnOnFailure:
				weighed = store.Warnings
			default:
				weighed = store.Success
			}
			stop = a.HaltOnFailure
		case store.Warnings:
			switch {
			case a.FlunkOnWarnings:
				weighed = store.Failure
			case a.WarnOnWarnings:
			default:
				weighed = store.Success
			}
		case store.Exception, store.Retry, store.Cancelled:
			stop = true
		}
		overall = store.WorstResult(overall, weighed)
		if stop {
			return overall, desc + stateSuffix(overall, res.TimedOut)
		}
	}
	return overall, desc + stateSuffix(overall, false)
}

// propertiesJSON is what json_properties_download writes: the build's
// properties and source stamps, as buildbot's JSONPropertiesDownload
// writes them. Secrets stay redacted.
func (b *build) propertiesJSON() ([]byte, error) {
	props := map[string]any{}
	for name, p := range b.currentProperties() {
		props[name] = propertyValue(p)
	}
	bs, err := b.e.st.Buildset(b.req.BuildsetID)
	if err != nil {
		return nil, fmt.Errorf("read this build's buildset: %w", err)
	}
	stamps := make([]map[string]any, 0, len(bs.SourceStamps))
	for _, ss := range bs.SourceStamps {
		stamps = append(stamps, map[string]any{
			"branch": orNil(ss.Branch), "revision": orNil(ss.Revision), "repository": ss.Repository,
			"project": ss.Project, "codebase": ss.Codebase,
			"patch_level": nil, "patch_body": nil, "patch_subdir": nil, "patch_author": nil, "patch_comment": nil,
		})
	}
	return json.Marshal(map[string]any{"properties": props, "sourcestamps": stamps})
}

// orNil is s, or nil (buildbot's None) when it is empty.
func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// runMultipleUpload uploads each of sc.WorkerSrcs (with glob, each file
// or directory they match) into the directory sc.MasterDest, as
// buildbot's MultipleFileUpload, and returns the result and how many
// there were to upload. What each source is, the worker tells by a shell
// command (buildbot asks its worker's stat and glob commands, which the
// gbb worker does not have); each is then a file_upload or a
// directory_upload, with their checks and limits.
func (b *build) runMultipleUpload(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, int) {
	if len(sc.WorkerSrcs) == 0 {
		return store.Skipped, 0
	}
	// Each source is uploaded to masterdest/<its base name>: an empty
	// masterdest would write into the master's basedir itself, a base
	// name "." or ".." into masterdest or its parent.
	if sc.MasterDest == "" {
		log.Warn("multiple_file_upload refused: empty masterdest")
		return b.failStep(step, fmt.Sprintf("step %q: masterdest is empty after rendering: refusing to upload into the master's basedir itself", sc.Name)), 0
	}
	for _, p := range sc.WorkerSrcs {
		if dotBase(p) {
			log.Warn("multiple_file_upload refused", "workersrc", p)
			return b.failStep(step, fmt.Sprintf("step %q: workersrc %q: its base name is %q, which would upload into masterdest itself or its parent, not a name inside it", sc.Name, p, path.Base(p))), 0
		}
	}
	var mu sync.Mutex
	var out bytes.Buffer
	tap := func(o protocol.Output) {
		if o.Stream != protocol.Stdout {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if out.Len() < maxListOutput {
			out.Write(o.Data)
		}
	}
	_, res := b.runCommandLog(ctx, step, "stdio", protocol.Command{
		Builder: b.cfg.WorkerDir(),
		Shell: &protocol.ShellCommand{
			Script:   listScript(sc.WorkerSrcs, sc.Glob),
			Workdir:  sc.Workdir,
			Env:      sc.Env,
			EnvLists: sc.EnvLists,
			Timeout:  sc.Timeout.Duration,
			MaxTime:  sc.MaxTime.Duration,
		},
	}, log, tap)
	if res != store.Success {
		return res, 0
	}
	mu.Lock()
	entries := bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte{0}), []byte{0})
	mu.Unlock()
	type source struct {
		path string
		dir  bool
	}
	var sources []source
	var problems []string
	for _, e := range entries {
		if len(e) < 2 {
			continue
		}
		p := string(e[1:])
		if dotBase(p) {
			// Only a pattern can give one (the literal ones were
			// refused above): sh's .* matches . and .., Python's glob,
			// which buildbot's worker uses, never does.
			continue
		}
		switch e[0] {
		case 'd', 'f':
			sources = append(sources, source{p, e[0] == 'd'})
		case 'm':
			if !sc.Glob {
				problems = append(problems, fmt.Sprintf("File %s/%s not available at worker", sc.Workdir, p))
			}
		default:
			problems = append(problems, p+" is neither a regular file, nor a directory")
		}
	}
	if len(problems) > 0 {
		b.writeText(step, "stderr", strings.Join(problems, "\n"))
		return store.Failure, len(sources)
	}
	if len(sources) == 0 {
		return store.Skipped, 0
	}
	seen := map[string]string{}
	for _, s := range sources {
		base := path.Base(s.path)
		if other, ok := seen[base]; ok {
			b.writeText(step, "stderr", fmt.Sprintf("%s and %s would both be uploaded to %s", other, s.path, filepath.Join(sc.MasterDest, base)))
			return store.Failure, len(sources)
		}
		seen[base] = s.path
	}
	overall := store.Success
	for _, s := range sources {
		sub := sc
		sub.Type, sub.WorkerSrc = "file_upload", s.path
		if s.dir {
			sub.Type = "directory_upload"
		}
		sub.MasterDest = filepath.Join(sc.MasterDest, path.Base(s.path))
		r := b.runUploadLog(ctx, step, sub, "upload "+s.path, log)
		overall = store.WorstResult(overall, r)
		if r != store.Success && r != store.Warnings {
			break
		}
	}
	return overall, len(sources)
}

// maxListOutput bounds what the listing of a multiple_file_upload may
// print.
const maxListOutput = 1 << 20

// listScript is the sh script that prints, for each of srcs (patterns
// expanded when glob), a type byte (d directory, f regular file, m
// missing, o other) and the path, each ending in a NUL.
func listScript(srcs []string, glob bool) string {
	words := make([]string, len(srcs))
	for i, s := range srcs {
		if glob {
			words[i] = shellPattern(s)
		} else {
			words[i] = shellQuote(s)
		}
	}
	return "for f in " + strings.Join(words, " ") + `; do ` +
		`if [ -d "$f" ]; then printf 'd%s\0' "$f"; ` +
		`elif [ -f "$f" ]; then printf 'f%s\0' "$f"; ` +
		`elif [ ! -e "$f" ] && [ ! -h "$f" ]; then printf 'm%s\0' "$f"; ` +
		`else printf 'o%s\0' "$f"; fi; done`
}

// shellQuote quotes s as one literal sh word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellPattern writes the path.Match pattern p as an sh pattern: *, ? and
// bracket expressions as they are (a leading ^ as sh's !), the rest
// quoted. config.Parse has checked that its bracket expressions hold only
// letters, digits, '.', '_' and '-'.
func shellPattern(p string) string {
	var out, lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out.WriteString(shellQuote(lit.String()))
			lit.Reset()
		}
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*', '?':
			flush()
			out.WriteByte(c)
		case '[':
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				lit.WriteByte(c)
				continue
			}
			flush()
			inner := p[i+1 : i+end]
			if strings.HasPrefix(inner, "^") {
				inner = "!" + inner[1:]
			}
			out.WriteString("[" + inner + "]")
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return out.String()
}

// dotBase reports whether the base name of the worker path p is "." or
// "..".
func dotBase(p string) bool {
	b := path.Base(p)
	return b == "." || b == ".."
}
