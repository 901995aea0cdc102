package build

import (
	"log/slog"
	"maps"
	"slices"

	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// logfiles makes a log of type "s" for each of a shell command's logfiles,
// as buildbot does (one log per logfile, named after it, its lines on the
// 'o' channel), after the stdio log; their writers write through st. It
// returns the output function that sends each chunk to its log, a
// function that closes those logs, and their ids by name.
func (b *build) logfiles(step store.Step, cmd protocol.Command, stdio *logWriter, st logStore, log *slog.Logger) (func(protocol.Output), func(), map[string]int64) {
	if cmd.Shell == nil || len(cmd.Shell.Logfiles) == 0 {
		return stdio.output, func() {}, nil
	}
	ids := map[string]int64{}
	for _, name := range slices.Sorted(maps.Keys(cmd.Shell.Logfiles)) {
		l, err := b.e.st.AddLog(step.ID, name, "s")
		if err != nil {
			log.Error("add log", "log", name, "err", err)
			continue
		}
		ids[name] = l.ID
	}
	out, closeLogs := b.logfileWriters(stdio, st, ids, log)
	return out, closeLogs, ids
}

// logfileWriters writes a command's output to its logs: the stdio log
// stdio, and the logfiles' logs of ids (by name) through st. It returns
// the output function and the function that closes the logfiles' logs.
func (b *build) logfileWriters(stdio *logWriter, st logStore, ids map[string]int64, log *slog.Logger) (func(protocol.Output), func()) {
	if len(ids) == 0 {
		return stdio.output, func() {}
	}
	logs := map[string]*logWriter{}
	for name, id := range ids {
		logs[name] = newLogWriter(st, id, b.e.logOptions(), log)
	}
	out := func(o protocol.Output) {
		if o.Stream != protocol.LogFile {
			stdio.output(o)
			return
		}
		if w := logs[o.Log]; w != nil {
			w.output(protocol.Output{Stream: protocol.Stdout, Data: o.Data})
		}
	}
	return out, func() {
		for _, w := range logs {
			w.close()
		}
	}
}

// resultCodes are buildbot's result names by code, as decode_rc names them.
var resultCodes = map[string]int{
	"success":   store.Success,
	"warnings":  store.Warnings,
	"failure":   store.Failure,
	"skipped":   store.Skipped,
	"exception": store.Exception,
	"retry":     store.Retry,
	"cancelled": store.Cancelled,
}

// decodeRC is buildbot's decodeRC: the step's result for the exit code of a
// command that ran to its end (not killed, not interrupted, not lost);
// results (what runCommand made of it) otherwise, and when the map is nil.
// A code the map does not name is FAILURE, as buildbot's.
func decodeRC(m map[int]string, res protocol.Result, results int) int {
	if m == nil || res.Err != "" || res.Signal != "" || res.TimedOut || res.Interrupted {
		return results
	}
	if results != store.Success && results != store.Failure {
		return results
	}
	if r, ok := resultCodes[m[res.ExitCode]]; ok {
		return r
	}
	return store.Failure
}
