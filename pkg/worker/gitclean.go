package worker

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// cleanTree removes what the index of repo (checked out in dir) does not
// track, as git clean -f -f -d does: untracked files and directories,
// nested repositories included. With ignored it also removes the files
// .gitignore and .git/info/exclude name, as -x adds. Submodules'
// directories are left alone.
func cleanTree(ctx context.Context, repo *git.Repository, dir string, ignored bool) error {
	idx, err := repo.Storer.Index()
	if err != nil {
		return err
	}
	keep := map[string]bool{} // tracked paths, gitlinks included
	parents := map[string]bool{}
	for _, e := range idx.Entries {
		keep[e.Name] = true
		for d := path.Dir(e.Name); d != "."; d = path.Dir(d) {
			parents[d] = true
		}
	}
	var match gitignore.Matcher
	if !ignored {
		wt, err := repo.Worktree()
		if err != nil {
			return err
		}
		ps, err := gitignore.ReadPatterns(wt.Filesystem, nil)
		if err != nil {
			return fmt.Errorf("read .gitignore files: %w", err)
		}
		match = gitignore.NewMatcher(ps)
	}
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if rel == "" && e.Name() == git.GitDirName {
				continue
			}
			p := path.Join(rel, e.Name())
			if keep[p] {
				continue
			}
			isDir := e.IsDir() // a symlink is removed, never followed
			if match != nil && match.Match(strings.Split(p, "/"), isDir) {
				continue
			}
			full := filepath.Join(dir, filepath.FromSlash(p))
			switch {
			case isDir && parents[p]:
				err = walk(p)
			case isDir && match != nil && !isRepository(full):
				// An untracked directory may hold ignored files, which
				// stay; the directory goes if nothing does.
				if err = walk(p); err == nil {
					err = removeIfEmpty(full)
				}
			default:
				err = os.RemoveAll(full)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return err
	}
	return nil
}

// isRepository reports whether dir holds a .git (a nested repository).
func isRepository(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, git.GitDirName))
	return err == nil
}

func removeIfEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) > 0 {
		return err
	}
	return os.Remove(dir)
}

// submodulePaths returns the paths of repo's gitlinks (its submodules).
func submodulePaths(repo *git.Repository) ([]string, error) {
	idx, err := repo.Storer.Index()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range idx.Entries {
		if e.Mode == filemode.Submodule {
			paths = append(paths, e.Name)
		}
	}
	return paths, nil
}

// copyTree copies the directory src to dst, which must not exist, as
// buildbot's cpdir: files and directories keep their permission bits and
// symlinks stay symlinks. A symlink that is absolute or leads out of src
// is refused, since the copy would not be self-contained.
func copyTree(ctx context.Context, src, dst string) error {
	var dirs []string // made writable while filling; their modes are set last
	modes := map[string]fs.FileMode{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !filepath.IsLocal(filepath.Join(filepath.Dir(rel), link)) || filepath.IsAbs(link) {
				return fmt.Errorf("symlink %s -> %s leads out of %s", rel, link, src)
			}
			return os.Symlink(link, to)
		case mode.IsDir():
			if rel == "." {
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
			}
			dirs = append(dirs, to)
			modes[to] = mode.Perm()
			return os.Mkdir(to, mode.Perm()|0o700)
		case mode.IsRegular():
			return copyFile(p, to, mode.Perm())
		default:
			return fmt.Errorf("%s is not a file, directory or symlink (%s)", rel, mode.Type())
		}
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := os.Chmod(d, modes[d]); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(to, perm) // the umask may have taken bits off
}
