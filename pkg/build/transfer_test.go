package build

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/internal/masterfiles"
)

// FuzzUnpackEntries: whatever tar entries a worker sends, in whatever
// order, every symlink unpacked resolves (as the kernel resolves it)
// inside the upload's directory, and nothing is made beside it. The input
// is one entry a line: "d NAME", "f NAME" or "l NAME TARGET".
func FuzzUnpackEntries(f *testing.F) {
	for _, seed := range []string{
		"l a .\nl a/a/a/rootlink ../../../etc",
		"d x\nl x/u ..\nl l x/u/x/u/../../../../etc",
		"d real\nl l real\nf l/evil",
		"d sub\nl sub/up ../..",
		"l abs /etc",
		"l late d/../..\nl d .",
		"d sub\nf sub/f\nl sub/up ..\nl sub/self ../sub\nl top ./sub/f",
		"l a b\nl b a\nf a/x",
		"l d sub/deeper\nd sub\nd sub/deeper\nl x d/../..",
		"d x\nd x/y\nl x/y/up ../..\nh hl x/y/up\nf hl/evil",
		"f f\nh x/y/hf f\nh out ../f\nl a .\nh a/a/b f",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		top := t.TempDir()
		dest := filepath.Join(top, "a", "b", "dest")
		if err := os.MkdirAll(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		dr, err := os.OpenRoot(dest)
		if err != nil {
			t.Fatal(err)
		}
		defer dr.Close()
		u := newUnpacker(dr)
		defer u.close()
		for _, line := range strings.Split(spec, "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			h := &tar.Header{Name: fields[1], Mode: 0o644}
			switch {
			case fields[0] == "d":
				h.Typeflag = tar.TypeDir
			case fields[0] == "f":
				h.Typeflag = tar.TypeReg
			case fields[0] == "l" && len(fields) == 3:
				h.Typeflag, h.Linkname = tar.TypeSymlink, fields[2]
			case fields[0] == "h" && len(fields) == 3:
				h.Typeflag, h.Linkname = tar.TypeLink, fields[2]
			default:
				continue
			}
			if err := u.entry(h, strings.NewReader("")); err != nil {
				continue // refused: unpack would stop; the rest must hold anyway
			}
		}
		// Each link is resolved as the kernel would, the part that does
		// not exist yet taken as written (a dangling link out is a
		// plant too: a later write through it lands outside).
		troot, err := os.OpenRoot(top)
		if err != nil {
			t.Fatal(err)
		}
		defer troot.Close()
		base := filepath.Join("a", "b", "dest")
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return err
			}
			rel, _ := filepath.Rel(top, p)
			r, err := masterfiles.Resolve(troot, rel)
			switch {
			case err != nil && strings.Contains(err.Error(), "too many levels"):
				// a loop leads nowhere
			case err != nil:
				t.Errorf("%s: %v", p, err)
			case r != base && !strings.HasPrefix(r, base+string(filepath.Separator)):
				t.Errorf("%s resolves to %s, out of the upload's directory", p, r)
			}
			return nil
		})
		for _, dir := range []string{top, filepath.Join(top, "a"), filepath.Join(top, "a", "b")} {
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
				t.Errorf("%s holds %v (%v), want only the upload's directory", dir, ents, err)
			}
		}
	})
}

// TestCheckLinkTarget: a link target is refused when absolute, when it
// climbs past the top, or when a ".." follows a name.
func TestCheckLinkTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		depth  int
		target string
		ok     bool
	}{
		{0, "x", true},
		{0, "./x/y", true},
		{0, ".", true},
		{1, "..", true},
		{1, "../x", true},
		{2, "../../x//y/", true},
		{0, "..", false},
		{1, "../..", false},
		{3, "x/../y", false},
		{3, "a/b/../../..", false},
		{0, "/etc", false},
		{0, "", false},
	}
	for _, tt := range tests {
		err := checkLinkTarget(tt.depth, tt.target)
		if (err == nil) != tt.ok {
			t.Errorf("checkLinkTarget(%d, %q) = %v, want ok %v", tt.depth, tt.target, err, tt.ok)
		}
		if err != nil && tt.target != "" && !errors.Is(err, errTarEscape) {
			t.Errorf("checkLinkTarget(%d, %q) = %v, not errTarEscape", tt.depth, tt.target, err)
		}
	}
}
