package masterfiles

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolve: paths are resolved through their symlinks as the kernel
// does, so "link/.." is the parent of the link's target.
func TestResolve(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, d := range []string{"a/b/c", "x"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"deep": "a/b/c", "self": ".", "up": "x/..", "loop": "loop", "out": "../..", "abs": "/etc", "x/back": "../a",
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	tests := []struct{ in, want, err string }{
		{"a/b/c/f", "a/b/c/f", ""},
		{"deep/../f", "a/b/f", ""}, // not "f", as the text says
		{"deep/x/../../f", "a/b/f", ""},
		{"self/self/a", "a", ""},
		{"x/back/b", "a/b", ""},
		{"new/dir/f", "new/dir/f", ""},
		{".", ".", ""},
		{"deep/../../../f", "", "leaves"}, // the text is refused first
		{"out/f", "", "leads out"},
		{"abs/passwd", "", "absolute"},
		{"loop/f", "", "too many levels"},
		{"../f", "", "leaves"},
	}
	for _, tt := range tests {
		got, err := Resolve(root, tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Resolve(%q) = %q, %v; want an error saying %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != filepath.FromSlash(tt.want)):
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestGuard: reads and writes of the master's files, inside its
// directories, of the copies beside them, of a hard link to one, and
// writes over a directory holding one are refused; the rest is allowed.
func TestGuard(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, f := range []string{"master.toml", "priv/secrets/tok", "pub/readme", "other"} {
		p := filepath.Join(base, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(base, "master.toml"), filepath.Join(base, "pub/hard")); err != nil {
		t.Fatal(err)
	}
	g := New(base, []File{
		{Path: filepath.Join(base, "master.toml"), What: "the config", Suffixed: true},
		{Path: filepath.Join(base, "priv/secrets"), What: "the secrets", Dir: true},
		{Path: "/elsewhere/key", What: "a key outside"},
	})
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	tests := []struct {
		p       string
		write   bool
		refused bool
	}{
		{"master.toml", false, true},
		{"master.toml.bak", true, true},
		{"priv/secrets/tok", false, true},
		{"priv/secrets/new", true, true},
		{"priv", true, true},
		{"priv", false, false},
		{".", true, true},
		{"pub/hard", false, true},
		{"pub/readme", false, false},
		{"pub", true, false},
		{"other", true, false},
		{"master.tomlx", true, false},
	}
	for _, tt := range tests {
		err := g.Check(root, tt.p, tt.write)
		if got := errors.Is(err, ErrMasterFile); got != tt.refused {
			t.Errorf("Check(%q, write=%v) = %v, want refused %v", tt.p, tt.write, err, tt.refused)
		}
	}
}

// A file replaced since the guard looked (an editor saving the config as
// a new file) leaves its old number free for the filesystem to give to a
// new file: that file is not the master's, and is not refused (buildbot's
// UI installed later, a transfer's file). An old version still reached
// through a hard link still is.
func TestGuardReplacedFile(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	cfg := filepath.Join(base, "master.toml")
	write := func(p, body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(p string) os.FileInfo {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	write(cfg, "SECRET-CONFIG")
	kept := filepath.Join(base, "kept.toml")
	write(kept, "SECRET-KEPT")
	g := New(base, []File{{Path: cfg, What: "the config file"}, {Path: kept, What: "the kept file"}})

	// The old kept.toml lives on under another name.
	if err := os.Link(kept, filepath.Join(base, "old.bin")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{kept, cfg} {
		write(p+".new", "NEW")
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Opened("old.bin", stat(filepath.Join(base, "old.bin"))); !errors.Is(err, ErrMasterFile) {
		t.Errorf("a hard link to the replaced kept.toml: %v, want refused", err)
	}
	// ext4 gives a freed inode number to one of the next files made.
	for i := range 20 {
		p := filepath.Join(base, fmt.Sprintf("index%d.html", i))
		write(p, "<html>")
		if err := g.Opened(p, stat(p)); err != nil {
			t.Fatalf("a new file, made after the config was replaced: %v", err)
		}
	}
}

// TestGuardPattern: a path an include pattern matches is the master's,
// existing or not, through symlinks too, and so is a directory written
// that could hold one; paths beside them are not.
func TestGuardPattern(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, d := range []string{"builders", "artifacts", "conf/linux"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("builders", filepath.Join(base, "b")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	g := New(base, []File{
		{Path: filepath.Join(base, "builders", "*.toml"), What: "a file an include pattern reads", Pattern: true},
		{Path: filepath.Join(base, "conf", "*", "x.toml"), What: "a file an include pattern reads", Pattern: true},
	})
	for _, tt := range []struct {
		p       string
		write   bool
		refused bool
	}{
		{"builders/99-evil.toml", true, true},
		{"artifacts/../builders/99-evil.toml", true, true},
		{"b/99-evil.toml", true, true}, // through the symlink
		{"builders/10.toml", false, true},
		{"builders", true, true}, // a directory_upload would replace it
		{"conf/freebsd/x.toml", true, true},
		{"conf/freebsd", true, true},
		{"conf", true, true},
		{"builders/notes.txt", true, false},
		{"builders/sub/a.toml", true, false},
		{"builders", false, false},
		{"conf/freebsd/y.toml", true, false},
		{"artifacts/a.toml", true, false},
		{"artifacts", true, false},
	} {
		err := g.Check(root, tt.p, tt.write)
		if got := errors.Is(err, ErrMasterFile); got != tt.refused {
			t.Errorf("Check(%q, write %v) = %v, want refused %v", tt.p, tt.write, err, tt.refused)
		}
	}
	fi, err := os.Stat(filepath.Join(base, "builders"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Served("x", filepath.Join(base, "builders", "a.toml"), fi); !errors.Is(err, ErrMasterFile) {
		t.Errorf("Served of a matching file = %v, want refused", err)
	}
}
