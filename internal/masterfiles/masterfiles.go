package masterfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File is one of the master's own files, or a directory of them.
type File struct {
	Path string // absolute
	What string // what it is, for messages: "the config file", "the store"
	// Dir is set for a directory: everything under it is the master's.
	Dir bool
	// Suffixed also protects the names Path + ".anything": the copies
	// made beside it (state.db.bak, state.db.compact, master.log.1).
	Suffixed bool
	// Pattern makes Path a glob (filepath.Match's syntax): every path it
	// matches is the master's, existing or not (an include pattern: a file
	// a build wrote there would be read as config at the next reconfig),
	// and so is a directory written that could hold one.
	Pattern bool
}

// ErrMasterFile is returned (wrapped, naming the file) when a transfer
// would read or write one of the master's own files.
var ErrMasterFile = errors.New("the master's own files are out of reach of transfers")

// maxLinks bounds the symlinks followed resolving one path, as the
// kernel's MAXSYMLINKS.
const maxLinks = 40

// Guard checks transfer paths against the master's own files.
type Guard struct {
	files []guarded
}

type guarded struct {
	File
	rel string      // Path relative to the basedir, symlinks resolved; "" when outside it
	abs string      // Path absolute, symlinks resolved
	fi  os.FileInfo // the file as it was when the guard was made; nil when missing
	// pin holds fi's file open, so that its device and inode numbers
	// stay its own: a file replaced since (an editor saving the config
	// as a new file) would otherwise free them for the next file made,
	// and that file would be refused as the master's. nil: not pinned
	// (see pin).
	pin *os.File
}

// New returns a Guard for the files of a master whose basedir is basedir.
// Files outside the basedir are kept for the same-file check only: a
// transfer cannot name them. The Guard holds the master's regular files
// open while it is reachable (the runtime closes them once it is not):
// one of them replaced or deleted since (a rotated log removed) keeps its
// space on disk until then.
func New(basedir string, files []File) *Guard {
	base := realPath(basedir)
	g := &Guard{}
	for _, f := range files {
		gf := guarded{File: f}
		p := realPath(f.Path)
		if f.Pattern {
			// Only the directories before the first wildcard exist to be
			// resolved.
			dir, rest := filepath.Clean(f.Path), ""
			for hasMeta(dir) {
				rest = filepath.Join(filepath.Base(dir), rest)
				dir = filepath.Dir(dir)
			}
			p = filepath.Join(realPath(dir), rest)
		}
		gf.abs = p
		if rel, err := filepath.Rel(base, p); err == nil && (rel == "." || filepath.IsLocal(rel)) {
			gf.rel = rel
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			gf.fi, gf.pin = fi, pin(p, fi)
		}
		g.files = append(g.files, gf)
	}
	return g
}

// realPath is p absolute with its symlinks resolved, as far as it exists.
func realPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// Check refuses p, a path relative to root (the master's basedir), when it
// resolves to one of the master's files or into one of its directories;
// with write, also when it is the basedir itself or a directory holding
// one of them (a directory_upload replaces its destination whole). p is
// resolved through root's symlinks; one leading out of root is refused.
func (g *Guard) Check(root *os.Root, p string, write bool) error {
	rel, err := Resolve(root, p)
	if err != nil {
		return err
	}
	if write && rel == "." {
		return fmt.Errorf("%q is the master's basedir: %w", p, ErrMasterFile)
	}
	var fi os.FileInfo
	if rel != "." {
		fi, _ = root.Stat(rel)
	}
	for _, f := range g.files {
		if f.fi != nil && fi != nil && os.SameFile(f.fi, fi) {
			return refusal(p, rel, f.File)
		}
		if f.rel == "" {
			continue
		}
		if f.Pattern {
			if matched, _ := filepath.Match(f.rel, rel); matched {
				return refusal(p, rel, f.File)
			}
			if write && mayHold(rel, f.rel) {
				return fmt.Errorf("%q may hold %s (%s): %w", p, f.What, f.Path, ErrMasterFile)
			}
			continue
		}
		switch {
		case rel == f.rel, within(rel, f.rel) && f.Dir:
			return refusal(p, rel, f.File)
		case f.Suffixed && strings.HasPrefix(rel, f.rel+"."):
			return refusal(p, rel, f.File)
		case write && (f.rel == "." || within(f.rel, rel)):
			return fmt.Errorf("%q holds %s (%s): %w", p, f.What, f.Path, ErrMasterFile)
		}
	}
	return nil
}

// hasMeta reports whether p has a wildcard of filepath.Match.
func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// mayHold says whether the directory dir (relative, clean) could hold a
// path that pattern (relative, clean) matches: its components match the
// pattern's first ones.
func mayHold(dir, pattern string) bool {
	if dir == "." {
		return true
	}
	dc := strings.Split(dir, string(filepath.Separator))
	pc := strings.Split(pattern, string(filepath.Separator))
	if len(dc) >= len(pc) {
		return false
	}
	for i, c := range dc {
		if matched, _ := filepath.Match(pc[i], c); !matched {
			return false
		}
	}
	return true
}

func refusal(p, rel string, f File) error {
	if p != rel {
		return fmt.Errorf("%q (%s, symlinks resolved) is %s (%s): %w", p, rel, f.What, f.Path, ErrMasterFile)
	}
	return fmt.Errorf("%q is %s (%s): %w", p, f.What, f.Path, ErrMasterFile)
}

// within says whether p lies under the directory dir (both relative and
// clean; "." is the root).
func within(p, dir string) bool {
	if dir == "." {
		return p != "."
	}
	return strings.HasPrefix(p, dir+string(filepath.Separator))
}

// Resolve returns p, a local path relative to root, with every symlink in
// it resolved as the kernel would (so "link/.." is the link's target's
// parent, not "."), as a clean path relative to root; the part that does
// not exist yet is taken as written. A path that leads out of root is
// refused.
func Resolve(root *os.Root, p string) (string, error) {
	if !filepath.IsLocal(p) && filepath.Clean(p) != "." {
		return "", fmt.Errorf("path %q leaves the master's basedir", p)
	}
	var done []string // resolved components, none a symlink
	todo := strings.Split(filepath.ToSlash(p), "/")
	links := 0
	missing := false
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", fmt.Errorf("path %q leads out of the master's basedir", p)
			}
			done = done[:len(done)-1]
			continue
		}
		next := filepath.Join(append(done, c)...)
		if missing {
			done = append(done, c)
			continue
		}
		fi, err := root.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = true
			done = append(done, c)
			continue
		case err != nil:
			return "", fmt.Errorf("resolve %q: %w", p, err)
		case fi.Mode()&fs.ModeSymlink == 0:
			done = append(done, c)
			continue
		}
		links++
		if links > maxLinks {
			return "", fmt.Errorf("resolve %q: too many levels of symbolic links", p)
		}
		target, err := root.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("resolve %q: %w", p, err)
		}
		if filepath.IsAbs(target) {
			return "", fmt.Errorf("path %q: symlink %s points to the absolute path %q", p, next, target)
		}
		todo = append(strings.Split(filepath.ToSlash(target), "/"), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return filepath.Join(done...), nil
}

// Served refuses a file that a server of some other directory (buildbot's
// UI, [www] buildbot_ui_dir) opened as fi at p, whose real path (absolute,
// symlinks resolved) is real, when it is one of the master's own files, a
// copy beside one, a file under one of its directories, or a hard link to
// one.
func (g *Guard) Served(p, real string, fi os.FileInfo) error {
	if err := g.Opened(p, fi); err != nil {
		return err
	}
	for _, f := range g.files {
		if f.Pattern {
			if matched, _ := filepath.Match(f.abs, real); matched {
				return fmt.Errorf("%q (%s) is %s (%s): %w", p, real, f.What, f.Path, ErrMasterFile)
			}
			continue
		}
		if real == f.abs || f.Dir && strings.HasPrefix(real, f.abs+string(filepath.Separator)) ||
			f.Suffixed && strings.HasPrefix(real, f.abs+".") {
			return fmt.Errorf("%q (%s) is %s (%s): %w", p, real, f.What, f.Path, ErrMasterFile)
		}
	}
	return nil
}

// Opened refuses fi, the file a transfer opened at p, when it is one of the
// master's own files: a hard link to one, or a path changed since Check.
func (g *Guard) Opened(p string, fi os.FileInfo) error {
	for _, f := range g.files {
		if f.fi != nil && os.SameFile(f.fi, fi) {
			return fmt.Errorf("%q is %s (%s): %w", p, f.What, f.Path, ErrMasterFile)
		}
	}
	return nil
}
