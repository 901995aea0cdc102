package worker

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// newBuilderDir makes BASEDIR/b/ with a file, a directory, and symlinks
// leading out of it.
func newBuilderDir(t *testing.T) (base, bdir, outside string) {
	t.Helper()
	base = t.TempDir()
	outside = t.TempDir()
	bdir = filepath.Join(base, "b")
	must(t, os.MkdirAll(filepath.Join(bdir, "build", "dist", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(bdir, "build", "a.txt"), []byte("hello\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(bdir, "build", "dist", "x"), []byte("x\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(bdir, "build", "dist", "sub", "y"), []byte("y\n"), 0o600))
	must(t, os.Symlink("../x", filepath.Join(bdir, "build", "dist", "sub", "link")))
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret\n"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(bdir, "out")))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(bdir, "build", "secret")))
	return base, bdir, outside
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFileCommands(t *testing.T) {
	t.Parallel()
	base, bdir, outside := newBuilderDir(t)
	e := NewExecutor(base, nil)
	run := func(op protocol.FileOp, p string) protocol.Result {
		var r logRecorder
		return e.Run(t.Context(), protocol.Command{Builder: "b", File: &protocol.FileCommand{Op: op, Path: p}}, r.out)
	}
	tests := []struct {
		name  string
		op    protocol.FileOp
		path  string
		ok    bool
		check func() bool
	}{
		{"mkdir", protocol.Mkdir, "build/new/deep", true, func() bool { return isDir(filepath.Join(bdir, "build/new/deep")) }},
		{"mkdir exists", protocol.Mkdir, "build", true, nil},
		{"mkdir dotdot", protocol.Mkdir, "../escaped", false, func() bool { return !lexists(filepath.Join(base, "escaped")) }},
		{"mkdir absolute", protocol.Mkdir, filepath.Join(outside, "abs"), false, func() bool { return !lexists(filepath.Join(outside, "abs")) }},
		{"mkdir through symlink out", protocol.Mkdir, "out/evil", false, func() bool { return !lexists(filepath.Join(outside, "evil")) }},
		{"rmdir", protocol.Rmdir, "build/dist", true, func() bool { return !lexists(filepath.Join(bdir, "build/dist")) }},
		{"rmdir missing", protocol.Rmdir, "build/nothing", true, nil},
		{"rmdir itself", protocol.Rmdir, ".", false, func() bool { return isDir(bdir) }},
		{"rmdir through symlink out", protocol.Rmdir, "out/x", false, nil},
		{"remove_file", protocol.RemoveFile, "build/a.txt", true, func() bool { return !lexists(filepath.Join(bdir, "build/a.txt")) }},
		{"remove_file missing", protocol.RemoveFile, "build/none", false, nil},
		{"remove_file directory", protocol.RemoveFile, "build", false, func() bool { return isDir(filepath.Join(bdir, "build")) }},
		{"remove_file through symlink out", protocol.RemoveFile, "out/secret", false, func() bool { return lexists(filepath.Join(outside, "secret")) }},
	}
	for _, tt := range tests { // in order: they share the directory
		res := run(tt.op, tt.path)
		if ok := res.ExitCode == 0 && res.Err == ""; ok != tt.ok {
			t.Errorf("%s: result %+v, want ok=%v", tt.name, res, tt.ok)
		}
		if tt.check != nil && !tt.check() {
			t.Errorf("%s: files not as expected", tt.name)
		}
	}
}

func lexists(p string) bool { _, err := os.Lstat(p); return err == nil }

func isDir(p string) bool { fi, err := os.Stat(p); return err == nil && fi.IsDir() }

func TestUpload(t *testing.T) {
	t.Parallel()
	base, _, _ := newBuilderDir(t)
	e := NewExecutor(base, nil)
	up := func(u protocol.UploadCommand) (protocol.Result, []byte, int) {
		var buf bytes.Buffer
		cw := &countWrites{w: &buf}
		u.Sink = cw
		var r logRecorder
		res := e.Run(t.Context(), protocol.Command{Builder: "b", Upload: &u}, r.out)
		return res, buf.Bytes(), cw.max
	}

	res, data, _ := up(protocol.UploadCommand{Workdir: "build", Path: "a.txt"})
	if res.Err != "" || string(data) != "hello\n" {
		t.Errorf("upload a.txt: %+v %q", res, data)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes
	must(t, os.WriteFile(filepath.Join(base, "b", "build", "big"), big, 0o644))
	res, data, maxWrite := up(protocol.UploadCommand{Workdir: "build", Path: "big", BlockSize: 1000})
	if res.Err != "" || !bytes.Equal(data, big) || maxWrite > 1000 {
		t.Errorf("upload big: %+v, %d bytes, largest write %d", res, len(data), maxWrite)
	}
	res, data, _ = up(protocol.UploadCommand{Workdir: "build", Path: "a.txt", MaxSize: 3})
	if !strings.Contains(res.Err, "maximum size exceeded") || len(data) != 0 {
		t.Errorf("upload over max_size: %+v, %d bytes sent", res, len(data))
	}
	for _, p := range []string{"../../x", "/etc/passwd", "secret"} {
		res, data, _ = up(protocol.UploadCommand{Workdir: "build", Path: p})
		if res.Err == "" || len(data) != 0 {
			t.Errorf("upload %q: %+v, %d bytes sent; want refused", p, res, len(data))
		}
	}

	res, data, _ = up(protocol.UploadCommand{Workdir: "build", Path: "dist", Directory: true})
	if res.Err != "" {
		t.Fatalf("upload dist: %+v", res)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, h.Name+"|"+h.Linkname)
	}
	sort.Strings(names)
	if want := "sub/link|../x,sub/y|,sub/|,x|"; strings.Join(names, ",") != want {
		t.Errorf("tar entries %q, want %q", strings.Join(names, ","), want)
	}
	res, _, _ = up(protocol.UploadCommand{Workdir: "build", Path: "dist", Directory: true, MaxSize: 100})
	if !strings.Contains(res.Err, "maximum size exceeded") {
		t.Errorf("directory upload over max_size: %+v", res)
	}
}

type countWrites struct {
	w   io.Writer
	max int
}

func (c *countWrites) Write(p []byte) (int, error) {
	c.max = max(c.max, len(p))
	return c.w.Write(p)
}

func TestDownload(t *testing.T) {
	t.Parallel()
	base, bdir, outside := newBuilderDir(t)
	e := NewExecutor(base, nil)
	down := func(d protocol.DownloadCommand, data string) protocol.Result {
		d.Source = strings.NewReader(data)
		var r logRecorder
		return e.Run(t.Context(), protocol.Command{Builder: "b", Download: &d}, r.out)
	}
	res := down(protocol.DownloadCommand{Workdir: "build", Path: "new/dir/f.sh", Mode: 0o750}, "#!/bin/sh\n")
	fi, err := os.Stat(filepath.Join(bdir, "build/new/dir/f.sh"))
	if res.Err != "" || err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("download with mode: %+v, %v, %v", res, fi, err)
	}
	// Over max_size: fails, and the old file is left as it was, with no
	// temporary file beside it.
	res = down(protocol.DownloadCommand{Workdir: "build", Path: "a.txt", MaxSize: 5}, "0123456789")
	if !strings.Contains(res.Err, "maximum size exceeded") {
		t.Errorf("download over max_size: %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(bdir, "build/a.txt")); string(b) != "hello\n" {
		t.Errorf("a.txt = %q after a failed download", b)
	}
	entries, _ := os.ReadDir(filepath.Join(bdir, "build"))
	for _, en := range entries {
		if strings.Contains(en.Name(), ".gbb-") {
			t.Errorf("temporary file %s left behind", en.Name())
		}
	}
	// The symlink build/secret is replaced, not written through.
	res = down(protocol.DownloadCommand{Workdir: "build", Path: "secret"}, "mine\n")
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); res.Err != "" || string(b) != "secret\n" {
		t.Errorf("download onto a symlink: %+v; outside file %q", res, b)
	}
	for _, p := range []string{"../../x", filepath.Join(outside, "abs")} {
		if res := down(protocol.DownloadCommand{Workdir: "build", Path: p}, "x"); res.Err == "" {
			t.Errorf("download to %q accepted", p)
		}
	}
	if res := down(protocol.DownloadCommand{Workdir: "..", Path: "out/evil"}, "x"); res.Err == "" || lexists(filepath.Join(outside, "evil")) {
		t.Errorf("download through a symlink out: %+v", res)
	}
	if res := down(protocol.DownloadCommand{Path: "out/evil"}, "x"); res.Err == "" || lexists(filepath.Join(outside, "evil")) {
		t.Errorf("download through a symlink out: %+v", res)
	}
}

// TestHostileMasterPaths: a master (a modified one, a compromised host)
// naming paths whose text stays in the builder's directory but which lead
// out of it on disk, through a link inside it, reaches nothing outside it
// with any file command or transfer: the worker cleans a path as text
// ("build/up/../x" is build/x) and opens it through an os.Root, which
// refuses what still leads out.
func TestHostileMasterPaths(t *testing.T) {
	t.Parallel()
	base, bdir, _ := newBuilderDir(t)
	// build/up is BASEDIR/b, so build/up/.. is BASEDIR: out of b/.
	must(t, os.Symlink("..", filepath.Join(bdir, "build", "up")))
	must(t, os.MkdirAll(filepath.Join(base, "other", "build"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "other", "build", "f"), []byte("other's\n"), 0o644))
	e := NewExecutor(base, nil)
	run := func(cmd protocol.Command) protocol.Result {
		cmd.Builder = "b"
		var r logRecorder
		return e.Run(t.Context(), cmd, r.out)
	}
	var sent bytes.Buffer
	for name, cmd := range map[string]protocol.Command{
		"download":  {Download: &protocol.DownloadCommand{Workdir: "build", Path: "up/../escaped", Source: strings.NewReader("x")}},
		"upload":    {Upload: &protocol.UploadCommand{Workdir: "build", Path: "up/../other/build/f", Sink: &sent}},
		"dirupload": {Upload: &protocol.UploadCommand{Workdir: "build", Path: "up/../other", Directory: true, Sink: &sent}},
		"mkdir":     {File: &protocol.FileCommand{Op: protocol.Mkdir, Path: "build/up/../made"}},
		"rmdir":     {File: &protocol.FileCommand{Op: protocol.Rmdir, Path: "build/up/../other"}},
		"rmfile":    {File: &protocol.FileCommand{Op: protocol.RemoveFile, Path: "build/up/../other/build/f"}},
	} {
		res := run(cmd)
		t.Logf("%s: %+v", name, res)
	}
	if sent.Len() != 0 {
		t.Errorf("sent %d bytes from outside the builder's directory", sent.Len())
	}
	if lexists(filepath.Join(base, "escaped")) || lexists(filepath.Join(base, "made")) {
		t.Errorf("BASEDIR/escaped or BASEDIR/made was made")
	}
	if !lexists(filepath.Join(base, "other", "build")) {
		t.Errorf("another builder's directory was removed")
	}
	if b, err := os.ReadFile(filepath.Join(base, "other", "build", "f")); err != nil || string(b) != "other's\n" {
		t.Errorf("another builder's file: %q, %v", b, err)
	}
	// The download went where its path says as text.
	if b, err := os.ReadFile(filepath.Join(bdir, "build", "escaped")); err != nil || string(b) != "x" {
		t.Errorf("b/build/escaped: %q, %v", b, err)
	}
}
