package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
)

// newLog makes a build, a step and a stdio log.
func newLog(t testing.TB, db Store) (Step, Log) {
	t.Helper()
	b := must[Builder](t)(db.EnsureBuilder("a"))
	build := must[Build](t)(db.AddBuild(NewBuild{BuilderID: b.ID}))
	step := must[Step](t)(db.AddStep(build.ID, "shell"))
	return step, must[Log](t)(db.AddLog(step.ID, "stdio", "s"))
}

func TestSlugify(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"stdio":                 "stdio",
		"test results.xml":      "test_results_xml",
		"Über-log_1":            "_ber-log_1",
		"":                      "_",
		strings.Repeat("x", 60): strings.Repeat("x", 50),
	} {
		if got := slugify(name); got != want {
			t.Errorf("slugify(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		step, stdio := newLog(t, db)
		if diff := cmp.Diff(Log{ID: 1, StepID: step.ID, Name: "stdio", Slug: "stdio", Type: "s"}, stdio); diff != "" {
			t.Errorf("AddLog (-want +got):\n%s", diff)
		}
		l2 := must[Log](t)(db.AddLog(step.ID, "a b", "t"))
		l3 := must[Log](t)(db.AddLog(step.ID, "a/b", "h"))
		long := strings.Repeat("y", 60)
		l4 := must[Log](t)(db.AddLog(step.ID, long, "t"))
		l5 := must[Log](t)(db.AddLog(step.ID, long+"z", "t"))
		var slugs []string
		for _, l := range []Log{l2, l3, l4, l5} {
			slugs = append(slugs, l.Slug)
		}
		if diff := cmp.Diff([]string{"a_b", "a_b_2", strings.Repeat("y", 50), strings.Repeat("y", 48) + "_2"}, slugs); diff != "" {
			t.Errorf("slugs (-want +got):\n%s", diff)
		}
		if _, err := db.AddLog(step.ID, "stdio", "s"); err == nil {
			t.Error("AddLog with a taken name succeeded")
		}
		if _, err := db.AddLog(step.ID, "other", "x"); err == nil {
			t.Error("AddLog with type x succeeded")
		}
		if diff := cmp.Diff(l3, must[Log](t)(db.LogBySlug(step.ID, "a_b_2"))); diff != "" {
			t.Errorf("LogBySlug (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]Log{stdio, l2, l3, l4, l5}, must[[]Log](t)(db.Logs(step.ID))); diff != "" {
			t.Errorf("Logs (-want +got):\n%s", diff)
		}

		for _, bad := range []string{"", "no newline", "one\ntwo"} {
			if _, err := db.AppendLog(stdio.ID, bad); err == nil {
				t.Errorf("AppendLog(%q) succeeded", bad)
			}
		}
		if first := must[int64](t)(db.AppendLog(stdio.ID, "hstart\n")); first != 0 {
			t.Errorf("first AppendLog: %d, want 0", first)
		}
		if first := must[int64](t)(db.AppendLog(stdio.ID, "oa\n\neb\n")); first != 1 {
			t.Errorf("second AppendLog: %d, want 1", first)
		}
		ok(t, db.FinishLog(stdio.ID))
		got := must[Log](t)(db.Log(stdio.ID))
		if got.NumLines != 4 || !got.Complete {
			t.Errorf("finished log: %+v", got)
		}
		if _, err := db.AppendLog(stdio.ID, "olate\n"); err == nil {
			t.Error("AppendLog to a finished log succeeded")
		}
		var sb strings.Builder
		ok(t, db.WriteLog(stdio.ID, &sb, func(line string) string { return line[1:] }))
		if diff := cmp.Diff("start\na\nb\n", sb.String()); diff != "" {
			t.Errorf("WriteLog stripped (-want +got):\n%s", diff)
		}

		for name, err := range map[string]error{
			"AddLog":    func() error { _, err := db.AddLog(99, "x", "s"); return err }(),
			"AppendLog": func() error { _, err := db.AppendLog(99, "x\n"); return err }(),
			"FinishLog": db.FinishLog(99),
			"Log":       func() error { _, err := db.Log(99); return err }(),
			"Logs":      func() error { _, err := db.Logs(99); return err }(),
			"LogBySlug": func() error { _, err := db.LogBySlug(step.ID, "nope"); return err }(),
			"LogLines":  func() error { _, err := db.LogLines(99, 0, 1); return err }(),
			"WriteLog":  db.WriteLog(99, &sb, nil),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of a missing record: %v, want ErrNotFound", name, err)
			}
		}
	})
}

// lineText is line i of the test logs.
func lineText(i int) string { return fmt.Sprintf("oline %d %s\n", i, strings.Repeat("x", i%7)) }

func TestLogLines(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		_, lg := newLog(t, db)
		var all []string
		// Batches of 1, 2, ... 20 lines: 210 lines in 20 chunks.
		for size := 1; size <= 20; size++ {
			var batch strings.Builder
			for range size {
				line := lineText(len(all))
				all = append(all, line)
				batch.WriteString(line)
			}
			first := must[int64](t)(db.AppendLog(lg.ID, batch.String()))
			if want := int64(len(all) - size); first != want {
				t.Fatalf("AppendLog: first %d, want %d", first, want)
			}
		}
		n := int64(len(all))
		want := func(first, last int64) string {
			first, last = max(first, 0), min(last, n-1)
			if first > last {
				return ""
			}
			return strings.Join(all[first:last+1], "")
		}
		// Chunk starts are 0, 1, 3, 6, 10, 15, ...
		for _, r := range [][2]int64{
			{0, 0}, {0, 1}, {1, 2}, {2, 3}, {3, 5}, {4, 11}, {5, 5}, {14, 15},
			{0, n - 1}, {100, 150}, {n - 1, n - 1}, {n - 5, n + 100}, {n, n + 5},
			{-3, 2}, {7, 6}, {0, -1},
		} {
			got := must[string](t)(db.LogLines(lg.ID, r[0], r[1]))
			if diff := cmp.Diff(want(r[0], r[1]), got); diff != "" {
				t.Errorf("LogLines(%d, %d) (-want +got):\n%s", r[0], r[1], diff)
			}
		}
		// Every range, exhaustively, on a small prefix.
		for first := int64(0); first < 40; first++ {
			for last := first; last < 40; last++ {
				if got := must[string](t)(db.LogLines(lg.ID, first, last)); got != want(first, last) {
					t.Fatalf("LogLines(%d, %d) = %q, want %q", first, last, got, want(first, last))
				}
			}
		}
		var sb strings.Builder
		ok(t, db.WriteLog(lg.ID, &sb, nil))
		if diff := cmp.Diff(want(0, n), sb.String()); diff != "" {
			t.Errorf("WriteLog (-want +got):\n%s", diff)
		}
	})
}

// TestLogLinesReadsOnlyItsChunks corrupts every chunk outside a range and
// reads the range.
//
// bbolt only: it corrupts chunks in bbolt's buckets.
func TestLogLinesReadsOnlyItsChunks(t *testing.T) {
	t.Parallel()
	db := openBolt(t)
	_, lg := newLog(t, db)
	for i := range 10 {
		must[int64](t)(db.AppendLog(lg.ID, lineText(3*i)+lineText(3*i+1)+lineText(3*i+2)))
	}
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		for _, start := range []int64{0, 3, 6, 15, 18, 21, 24, 27} {
			if err := bucket(tx, bucketLogChunk).Put(key2(lg.ID, start), []byte{0, 0, 0, 3, 'b', 'a', 'd'}); err != nil {
				return err
			}
		}
		return nil
	}))
	got := must[string](t)(db.LogLines(lg.ID, 10, 13))
	if want := lineText(10) + lineText(11) + lineText(12) + lineText(13); got != want {
		t.Errorf("LogLines(10, 13) = %q, want %q", got, want)
	}
	if _, err := db.LogLines(lg.ID, 5, 9); err == nil {
		t.Error("LogLines over a corrupt chunk succeeded")
	}
	// Put the test's cleanup check right again: drop the log's chunks.
	ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
		for i := range 10 {
			if err := bucket(tx, bucketLogChunk).Delete(key2(lg.ID, int64(3*i))); err != nil {
				return err
			}
		}
		return modify(tx, bucketLog, lg.ID, func(l *Log) error { l.NumLines = 0; return nil })
	}))
}

// TestLogWhileAppending reads a log while another goroutine appends to it.
func TestLogWhileAppending(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, be backend) {
		db := be.open(t)
		_, lg := newLog(t, db)
		const batches = 50
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range batches {
				if _, err := db.AppendLog(lg.ID, lineText(2*i)+lineText(2*i+1)); err != nil {
					t.Error(err)
					return
				}
			}
		})
		for {
			l := must[Log](t)(db.Log(lg.ID))
			// Whatever has been appended reads back whole.
			got := must[string](t)(db.LogLines(lg.ID, 0, 1<<40))
			var want strings.Builder
			for i := range int(l.NumLines) {
				want.WriteString(lineText(i))
			}
			if !strings.HasPrefix(got, want.String()) || strings.Count(got, "\n")%2 != 0 {
				t.Fatalf("LogLines while appending: %d lines, want at least %d in pairs", strings.Count(got, "\n"), l.NumLines)
			}
			var sb strings.Builder
			ok(t, db.WriteLog(lg.ID, &sb, nil))
			if !strings.HasPrefix(sb.String(), want.String()) {
				t.Fatalf("WriteLog while appending is not a prefix of the log")
			}
			if l.NumLines == 2*batches {
				break
			}
		}
		wg.Wait()
	})
}

func BenchmarkAppendLog(b *testing.B) {
	db := openBolt(b)
	_, lg := newLog(b, db)
	var batch strings.Builder
	for i := 0; batch.Len() < 64<<10-100; i++ {
		fmt.Fprintf(&batch, "o%08d the quick brown fox jumps over the lazy dog, build output line %d\n", i, i*7919)
	}
	lines := batch.String()
	b.SetBytes(int64(len(lines)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := db.AppendLog(lg.ID, lines); err != nil {
			b.Fatal(err)
		}
	}
}

// A log whose chunks were compressed at other zstd levels (SpeedDefault
// before the store moved to SpeedFastest) reads back whole, mixed with
// chunks written now.
//
// bbolt only: it writes chunks of older gbbs into bbolt's buckets.
func TestLogChunksOfOtherLevels(t *testing.T) {
	t.Parallel()
	db := openBolt(t)
	_, l := newLog(t, db)
	want := ""
	for _, level := range []zstd.EncoderLevel{zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		text := ""
		for i := range 200 {
			text += lineText(i)
		}
		must[int64](t)(db.AppendLog(l.ID, "onow\n"))
		want += "onow\n" + text
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level))
		ok(t, err)
		chunk := enc.EncodeAll([]byte(text), binary.BigEndian.AppendUint32(nil, 200))
		ok(t, enc.Close())
		// Stored as AppendLog stored it with that level.
		ok(t, db.bolt.Update(func(tx *bolt.Tx) error {
			return modify(tx, bucketLog, l.ID, func(lg *Log) error {
				first := lg.NumLines
				lg.NumLines += 200
				return bucket(tx, bucketLogChunk).Put(key2(l.ID, first), chunk)
			})
		}))
	}
	got := must[string](t)(db.LogLines(l.ID, 0, 1<<20))
	if got != want {
		t.Errorf("read back %d bytes, want %d; differ from byte %d", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
