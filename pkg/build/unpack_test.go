package build

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tarEntry is one entry of a tar made for a test; Body is a regular
// file's content.
type tarEntry struct {
	Type byte
	Name string
	Link string
	Body string
}

// writeTar writes entries as a tar file in dir and returns it open, as the
// upload's temporary file is.
func writeTar(t *testing.T, dir string, entries []tarEntry) *os.File {
	t.Helper()
	f, err := os.CreateTemp(dir, "upload-*.tar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tw := tar.NewWriter(f)
	for _, e := range entries {
		h := &tar.Header{Typeflag: e.Type, Name: e.Name, Linkname: e.Link, Mode: 0o644, Size: int64(len(e.Body))}
		if e.Type != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

// unpackIn unpacks entries into a fresh master basedir as "dest" and
// returns the basedir, the skipped lines and unpack's error.
func unpackIn(t *testing.T, ctx context.Context, entries []tarEntry) (string, []string, error) {
	t.Helper()
	base := t.TempDir()
	f := writeTar(t, t.TempDir(), entries)
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	skipped, err := unpack(ctx, root, f, "dest")
	return base, skipped, err
}

// assertNothingLeft fails unless base is empty: a refused upload leaves
// neither dest nor its temporary directory.
func assertNothingLeft(t *testing.T, base string) {
	t.Helper()
	ents, err := os.ReadDir(base)
	if err != nil || len(ents) != 0 {
		t.Errorf("the basedir holds %v (%v) after a refused upload, want nothing", ents, err)
	}
}

// TestUnpackLimits: the probe's archive (40 files 2,000 directories deep,
// which took the master 77 s) and entries over each limit are refused at
// once with a message naming the limit, and leave nothing behind; entries
// at the limits are unpacked.
func TestUnpackLimits(t *testing.T) {
	t.Parallel()
	var probe []tarEntry
	for i := range 40 {
		probe = append(probe, tarEntry{Type: tar.TypeReg, Name: strings.Repeat("d/", 2000) + fmt.Sprintf("f%d", i), Body: "x"})
	}
	longNames := strings.Repeat(strings.Repeat("n", 250)+"/", 17) + "f" // 4,268 bytes, 18 deep
	tests := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"probe", probe, "is 2001 names deep, more than 256"},
		{"deep dir", []tarEntry{{Type: tar.TypeDir, Name: strings.Repeat("d/", 257)}}, "257 names deep"},
		{"long name", []tarEntry{{Type: tar.TypeReg, Name: "a/" + strings.Repeat("n", 256)}}, "256 bytes long, more than 255"},
		{"long path", []tarEntry{{Type: tar.TypeReg, Name: longNames}}, "4268 bytes long, more than 4096"},
		{"long link", []tarEntry{{Type: tar.TypeSymlink, Name: "l", Link: strings.Repeat("x/", 2100)}}, "more than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			base, _, err := unpackIn(t, t.Context(), tt.entries)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("unpack: %v, want an error saying %q", err, tt.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the refusal took %s", d)
			}
			if len(err.Error()) > 600 {
				t.Errorf("the error is %d bytes long: the entry's name is not cut", len(err.Error()))
			}
			assertNothingLeft(t, base)
		})
	}

	// At the limits: 256 deep, names of 255 bytes, 4,096 bytes of path.
	atLimit := strings.Repeat("d/", 255) + "f"
	name255 := strings.Repeat("n", 255)
	path4096 := name255 + "/" + strings.Repeat(strings.Repeat("n", 254)+"/", 15) + strings.Repeat("m", 15)
	base, _, err := unpackIn(t, t.Context(), []tarEntry{
		{Type: tar.TypeReg, Name: atLimit, Body: "deep"},
		{Type: tar.TypeReg, Name: path4096, Body: "long"},
	})
	if err != nil {
		t.Fatalf("entries at the limits: %v", err)
	}
	for name, want := range map[string]string{atLimit: "deep", path4096: "long"} {
		if len(name) > 4096 {
			t.Fatalf("test bug: %d bytes", len(name))
		}
		root, err := os.OpenRoot(filepath.Join(base, "dest"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := root.ReadFile(name)
		root.Close()
		if err != nil || string(got) != want {
			t.Errorf("%.40s...: %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestUnpackDeepIsLinear: an honest archive of many files deep in a tree
// unpacks with work linear in the archive: each entry is made by name in
// its parent, not by walking its path again from the top, nor by checking
// each of its parents from the top (depth² per entry, which took
// minutes). The work is counted, not timed (timing fails on a loaded
// machine): os.Root allocates for every name it walks (each openat or
// fstatat takes its name as a C string), so the allocations of an unpack
// count its path walks. Doubling the depth of the same 1,000 files adds
// only the directories of the deeper path; walking each entry's path
// would double the work, checking each parent from the top quadruple it.
// The test then checks that os.Root still allocates per name walked.
// Not parallel: the count is the process's, so no other test of the
// package runs meanwhile.
func TestUnpackDeepIsLinear(t *testing.T) {
	const files = 1000
	// unpackAllocs unpacks the files depth directories deep and returns
	// the allocations of the unpack alone, the fewest of three runs (the
	// runtime allocates now and then on its own).
	unpackAllocs := func(depth int) uint64 {
		dir := strings.Repeat("d/", depth)
		var entries []tarEntry
		for i := range files {
			entries = append(entries, tarEntry{Type: tar.TypeReg, Name: fmt.Sprintf("%sf%d", dir, i), Body: "x"})
		}
		least := uint64(math.MaxUint64)
		for range 3 {
			base := t.TempDir()
			f := writeTar(t, t.TempDir(), entries)
			root, err := os.OpenRoot(base)
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = unpack(t.Context(), root, f, "dest")
			runtime.ReadMemStats(&after)
			root.Close()
			if err != nil {
				t.Fatal(err)
			}
			least = min(least, after.Mallocs-before.Mallocs)
			ents, err := os.ReadDir(filepath.Join(base, "dest", dir))
			if err != nil || len(ents) != files {
				t.Fatalf("the deepest directory holds %d entries (%v), want %d", len(ents), err, files)
			}
		}
		return least
	}
	shallow, deep := unpackAllocs(60), unpackAllocs(120)
	// The count must see path walks: an os.Root that walked paths
	// without allocating (in the kernel) would hide a regression.
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, strings.Repeat("d/", 120)), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	walk := func(depth int) float64 {
		return testing.AllocsPerRun(10, func() { root.Lstat(strings.Repeat("d/", depth) + "nosuch") })
	}
	w1, w120 := walk(1), walk(120)
	t.Logf("os.Root.Lstat allocates %v times 1 deep, %v 120 deep", w1, w120)
	if w120 < w1+60 {
		t.Fatalf("os.Root's Lstat allocates %v times 1 deep, %v 120 deep: allocations no longer count its walks; count the unpack's work another way", w1, w120)
	}
	t.Logf("%d files unpacked 60 deep: %d allocations; 120 deep: %d", files, shallow, deep)
	if float64(deep) > 1.5*float64(shallow) {
		t.Errorf("unpacking %d files 120 deep took %d allocations, 60 deep %d: the work grows with the depth of every entry", files, deep, shallow)
	}
}

// TestUnpackStops: an unpack whose build was stopped (or whose master
// stops) ends at once with the context's cause and leaves nothing.
func TestUnpackStops(t *testing.T) {
	t.Parallel()
	var entries []tarEntry
	for i := range 2000 {
		entries = append(entries, tarEntry{Type: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Body: "x"})
	}
	stopped := errors.New("build stopped")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(stopped)
	base, _, err := unpackIn(t, ctx, entries)
	if !errors.Is(err, stopped) {
		t.Fatalf("unpack with its build stopped: %v, want %v", err, stopped)
	}
	assertNothingLeft(t, base)

	// Stopped in the middle of a long copy: the file's reads stop.
	ctx, cancel = context.WithCancelCause(t.Context())
	r := ctxReader{ctx: ctx, r: strings.NewReader(strings.Repeat("x", 1<<20))}
	buf := make([]byte, 1024)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel(stopped)
	if _, err := r.Read(buf); !errors.Is(err, stopped) {
		t.Errorf("a read after the stop: %v, want %v", err, stopped)
	}
}

// TestUnpackSpecialEntries: hard links to files of the archive are made
// (buildbot's workers send them for files with several links); FIFOs and
// devices are skipped, one line each up to a cap, then a count; a hard
// link to a symlink or out of the directory refuses the upload.
func TestUnpackSpecialEntries(t *testing.T) {
	t.Parallel()
	entries := []tarEntry{
		{Type: tar.TypeReg, Name: "sub/file", Body: "content"},
		{Type: tar.TypeLink, Name: "other/link", Link: "sub/file"},
		{Type: tar.TypeChar, Name: "null"},
		{Type: tar.TypeBlock, Name: "disk"},
	}
	for i := range 30 {
		entries = append(entries, tarEntry{Type: tar.TypeFifo, Name: fmt.Sprintf("fifo%d", i)})
	}
	base, skipped, err := unpackIn(t, t.Context(), entries)
	if err != nil {
		t.Fatal(err)
	}
	a, err1 := os.Stat(filepath.Join(base, "dest", "sub", "file"))
	b, err2 := os.Stat(filepath.Join(base, "dest", "other", "link"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("the hard link is not the file: %v %v", err1, err2)
	}
	want := []string{`skipped "null": a character device, not unpacked`, `skipped "disk": a block device, not unpacked`, `skipped "fifo0": a FIFO, not unpacked`}
	if len(skipped) != maxTarSkippedLines+1 {
		t.Fatalf("%d skipped lines, want %d: %q", len(skipped), maxTarSkippedLines+1, skipped)
	}
	for i, w := range want {
		if i >= len(skipped) || skipped[i] != w {
			t.Errorf("skipped line %d: %q, want %q", i, skipped, w)
		}
	}
	if last := skipped[len(skipped)-1]; last != "skipped 12 more entries (devices, FIFOs or other special files)" {
		t.Errorf("last skipped line: %q", last)
	}
	filepath.WalkDir(filepath.Join(base, "dest"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&(fs.ModeNamedPipe|fs.ModeDevice) != 0 {
			t.Errorf("%s was made", p)
		}
		return err
	})

	for _, tt := range []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"to a symlink", []tarEntry{{Type: tar.TypeDir, Name: "x/y"}, {Type: tar.TypeSymlink, Name: "x/y/up", Link: "../.."}, {Type: tar.TypeLink, Name: "hl", Link: "x/y/up"}}, "not a regular file"},
		{"out", []tarEntry{{Type: tar.TypeLink, Name: "hl", Link: "../../etc/passwd"}}, "lead out of the upload's directory"},
		{"absolute", []tarEntry{{Type: tar.TypeLink, Name: "hl", Link: "/etc/passwd"}}, "lead out of the upload's directory"},
		{"missing", []tarEntry{{Type: tar.TypeLink, Name: "hl", Link: "nothing"}}, "no such file"},
	} {
		base, _, err := unpackIn(t, t.Context(), tt.entries)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("hard link %s: %v, want an error saying %q", tt.name, err, tt.want)
		}
		assertNothingLeft(t, base)
	}
}

// TestUnpackSparseBomb: a second probe's archive, 10 KB holding one PAX
// "GNU sparse 1.0" entry that says it is 1 GiB of which one byte is data
// (testdata/sparse-1g.tar, made with Python's tarfile, whose pax_headers
// can say so; Go's tar writer drops GNU.sparse records). archive/tar
// expands it: the master wrote 1 GiB of zeros from it, past max_size,
// deaf to a stop. It is refused before a byte is written.
func TestUnpackSparseBomb(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	f, err := os.Open(filepath.Join("testdata", "sparse-1g.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, err = unpack(t.Context(), root, f, "dest")
	if err == nil || !strings.Contains(err.Error(), "more than the 10240-byte archive itself") {
		t.Fatalf("unpack of the sparse bomb: %v, want it refused for holding more than the archive", err)
	}
	assertNothingLeft(t, base)
}

// TestUnpackBuildbotWorkerTop: buildbot-worker's uploadDirectory makes its
// tar with Python's tarfile.add(path, ”), whose top directory is named
// "/"; it is the upload's top, as buildbot's master's extractall takes it.
func TestUnpackBuildbotWorkerTop(t *testing.T) {
	t.Parallel()
	base, skipped, err := unpackIn(t, context.Background(), []tarEntry{
		{Type: tar.TypeDir, Name: "/"},
		{Type: tar.TypeDir, Name: "sub/"},
		{Type: tar.TypeReg, Name: "sub/copy.txt", Body: "hello\n"},
	})
	if err != nil || len(skipped) > 0 {
		t.Fatalf("unpack: %v, skipped %q", err, skipped)
	}
	got, err := os.ReadFile(filepath.Join(base, "dest", "sub", "copy.txt"))
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("sub/copy.txt = %q, %v", got, err)
	}
}
