package worker

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

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
