package build

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

func TestComputeResult(t *testing.T) {
	t.Parallel()
	step := func(flunk, warn, halt bool) config.Step {
		return config.Step{FlunkOnFailure: flunk, WarnOnFailure: warn, HaltOnFailure: halt}
	}
	tests := []struct {
		name          string
		step          config.Step
		build, result int
		want          int
		terminate     bool
	}{
		{"success keeps success", step(true, false, false), store.Success, store.Success, store.Success, false},
		{"failure flunks", step(true, false, false), store.Success, store.Failure, store.Failure, false},
		{"failure halts", step(true, false, true), store.Success, store.Failure, store.Failure, true},
		{"failure only warns", step(false, true, false), store.Success, store.Failure, store.Warnings, false},
		{"failure ignored", step(false, false, false), store.Success, store.Failure, store.Success, false},
		{"ignored failure still halts", step(false, false, true), store.Success, store.Failure, store.Success, true},
		{"earlier failure stays", step(true, false, false), store.Failure, store.Success, store.Failure, false},
		{"warnings", step(true, false, false), store.Success, store.Warnings, store.Warnings, false},
		{"exception terminates", step(true, false, false), store.Success, store.Exception, store.Exception, true},
		{"retry terminates", step(true, false, false), store.Failure, store.Retry, store.Retry, true},
		{"cancelled beats failure", step(true, false, false), store.Failure, store.Cancelled, store.Cancelled, true},
		{"skipped counts as success", step(true, false, false), store.Success, store.Skipped, store.Success, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, term := computeResult(tc.step, tc.build, tc.result)
			if got != tc.want || term != tc.terminate {
				t.Errorf("computeResult = %s, %v; want %s, %v", ResultName(got), term, ResultName(tc.want), tc.terminate)
			}
		})
	}
}

// openLog makes a real store with one stdio log.
func openLog(t *testing.T) (*store.DB, int64) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Error(err)
		}
		db.Close()
	})
	b, _ := db.EnsureBuilder("b")
	_, brids, err := db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	bld, err := db.AddBuild(store.NewBuild{BuilderID: b.ID, BuildRequestID: brids[b.ID]})
	if err != nil {
		t.Fatal(err)
	}
	st, err := db.AddStep(bld.ID, "s")
	if err != nil {
		t.Fatal(err)
	}
	l, err := db.AddLog(st.ID, "stdio", "s")
	if err != nil {
		t.Fatal(err)
	}
	return db, l.ID
}

// TestLogWriter: chunks cut anywhere become whole, prefixed lines, in the
// order their lines were completed; unfinished lines are kept at close.
func TestLogWriter(t *testing.T) {
	t.Parallel()
	db, id := openLog(t)
	w := newLogWriter(db, id, logOptions{Flush: time.Hour}, nil)
	w.header("cmd")
	for _, o := range []protocol.Output{
		{Stream: protocol.Stdout, Data: []byte("hel")},
		{Stream: protocol.Stderr, Data: []byte("oops\nerr-")},
		{Stream: protocol.Stdout, Data: []byte("lo\r\nworld\n\nlast")},
	} {
		w.output(o)
	}
	w.close()
	got, err := db.LogLines(id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := "hcmd\neoops\nohello\noworld\no\nolast\neerr-\n"
	if got != want {
		t.Errorf("log:\n%q\nwant:\n%q", got, want)
	}
	l, _ := db.Log(id)
	if !l.Complete || l.NumLines != 7 {
		t.Errorf("log record %+v", l)
	}
}

// TestLogWriterBatches: big output is stored while it comes, not only at
// the end, and a line longer than maxLineLength is cut.
func TestLogWriterBatches(t *testing.T) {
	t.Parallel()
	db, id := openLog(t)
	w := newLogWriter(db, id, logOptions{Flush: time.Hour}, nil)
	line := strings.Repeat("x", 99) + "\n"
	// logQueue+2 batches queued: the writer has taken the second, so it
	// has stored the first.
	for range (logQueue + 2) * logBatch / len(line) {
		w.output(protocol.Output{Stream: protocol.Stdout, Data: []byte(line)})
	}
	l, _ := db.Log(id)
	if l.NumLines == 0 {
		t.Errorf("nothing stored after %d bytes of output", (logQueue+2)*logBatch)
	}
	w.output(protocol.Output{Stream: protocol.Stdout, Data: []byte(strings.Repeat("y", maxLineLength+10))})
	w.close()
	l, _ = db.Log(id)
	last, _ := db.LogLines(id, l.NumLines-2, l.NumLines-1)
	if want := "o" + strings.Repeat("y", maxLineLength) + "\noyyyyyyyyyy\n"; last != want {
		t.Errorf("long line stored as %d bytes, want cut at %d", len(last), maxLineLength)
	}
}
