package build

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// This file runs the worker file steps (mkdir, rmdir, remove_file) and the
// transfers (file_upload, directory_upload, file_download,
// string_download), as buildbot's steps of those names. Master paths are
// relative to the master's basedir (Config.Basedir) and may not leave it:
// an absolute path is taken only when it lies inside it, and every master
// file is opened through an os.Root on it, so symlinks leading out are
// refused too. Nor may they reach the master's own files
// (Config.MasterFiles), their symlinks resolved. Files are written to a
// temporary name and renamed on success; a failed transfer leaves nothing
// behind. A directory upload's tar is unpacked entry by entry against what
// is already on disk: see unpack.

// runWorkerStep runs one of the step types of config.WorkerStepTypes.
func (b *build) runWorkerStep(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	desc := sc.Description
	var res int
	switch sc.Type {
	case "mkdir":
		desc = orDefault(desc, "mkdir "+sc.Dir)
		res = b.runFileOp(ctx, step, protocol.Mkdir, sc.Dir, log)
	case "rmdir":
		desc = orDefault(desc, "rmdir "+sc.Dir)
		res = b.runFileOp(ctx, step, protocol.Rmdir, sc.Dir, log)
	case "remove_file":
		desc = orDefault(desc, "remove "+sc.Path)
		res = b.runFileOp(ctx, step, protocol.RemoveFile, sc.Path, log)
	case "file_upload", "directory_upload":
		desc = orDefault(desc, "uploading "+filepath.Base(sc.WorkerSrc))
		res = b.runUpload(ctx, step, sc, log)
	case "file_download":
		desc = orDefault(desc, "downloading to "+filepath.Base(sc.WorkerDest))
		res = b.runDownload(ctx, step, sc, nil, log)
	case "string_download":
		desc = orDefault(desc, "downloading to "+filepath.Base(sc.WorkerDest))
		res = b.runDownload(ctx, step, sc, strings.NewReader(sc.Content), log)
	}
	return res, desc + stateSuffix(res, false)
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func (b *build) runFileOp(ctx context.Context, step store.Step, op protocol.FileOp, path string, log *slog.Logger) int {
	_, res := b.runCommand(ctx, step, protocol.Command{
		Builder: b.cfg.WorkerDir(),
		File:    &protocol.FileCommand{Op: op, Path: path},
	}, log)
	return res
}

// failStep writes msg to the step's stdio log, as a step that could not
// start does, and returns FAILURE.
func (b *build) failStep(step store.Step, msg string) int {
	st := b.e.st
	if l, err := st.AddLog(step.ID, "stdio", "s"); err == nil {
		_, err := st.AppendLog(l.ID, "h"+msg+"\n")
		b.check(err)
		b.check(st.FinishLog(l.ID))
	}
	return store.Failure
}

// masterRoot opens the master's basedir and returns p relative to it.
func (b *build) masterRoot(p string) (*os.Root, string, error) {
	base := b.e.basedir
	if base == "" {
		return nil, "", errors.New("the master's basedir is unknown: no master-side transfers")
	}
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(base, p)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, "", fmt.Errorf("master path %q is outside the master's basedir", p)
		}
		p = rel
	}
	if !filepath.IsLocal(p) {
		return nil, "", fmt.Errorf("master path %q leaves the master's basedir", p)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		return nil, "", err
	}
	return root, p, nil
}

// tempName is a fresh name next to p for a file being written.
func tempName(p string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	dir, file := filepath.Split(p)
	return filepath.Join(dir, "."+file+".gbb-"+hex.EncodeToString(b[:]))
}

// sizeLimit fails a write that would go over max bytes (0: no limit).
type sizeLimit struct {
	w   io.Writer
	max int64
	n   int64
}

func (l *sizeLimit) Write(p []byte) (int, error) {
	if l.max > 0 && l.n+int64(len(p)) > l.max {
		return 0, fmt.Errorf("maximum size exceeded: more than %d bytes", l.max)
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

func (b *build) runUpload(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) int {
	root, dest, err := b.masterRoot(sc.MasterDest)
	if err != nil {
		return b.failStep(step, err.Error())
	}
	defer root.Close()
	if err := b.e.masterGuard().Check(root, dest, true); err != nil {
		log.Warn("transfer refused", "masterdest", sc.MasterDest, "err", err)
		return b.failStep(step, fmt.Sprintf("step %q: masterdest refused: %v", sc.Name, err))
	}
	if dir := filepath.Dir(dest); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return b.failStep(step, err.Error())
		}
	}
	tmp := tempName(dest)
	f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return b.failStep(step, err.Error())
	}
	defer func() {
		f.Close()
		_ = root.Remove(tmp)
	}()
	dir := sc.Type == "directory_upload"
	_, res := b.runCommand(ctx, step, protocol.Command{
		Builder: b.cfg.WorkerDir(),
		Upload: &protocol.UploadCommand{
			Workdir:   sc.Workdir,
			Path:      sc.WorkerSrc,
			Directory: dir,
			MaxSize:   sc.MaxSize,
			BlockSize: sc.BlockSize,
			Sink:      &sizeLimit{w: f, max: sc.MaxSize},
		},
	}, log)
	if res != store.Success {
		return res
	}
	if dir {
		err = b.unpack(root, f, dest)
	} else {
		if sc.FileMode != 0 {
			err = f.Chmod(os.FileMode(sc.FileMode).Perm())
		}
		if err == nil {
			err = f.Close()
		}
		if err == nil {
			err = root.Rename(tmp, dest)
		}
	}
	if err != nil {
		// The command's stdio log is complete: say why in err.text.
		log.Warn("upload refused", "masterdest", sc.MasterDest, "err", err)
		b.writeText(step, "err.text", "cannot write "+sc.MasterDest+": "+err.Error())
		return store.Failure
	}
	return store.Success
}

// unpack extracts the tar file f into a temporary directory and puts it in
// place of dest. Each entry is resolved against what the entries before it
// made: an entry whose parent is a symlink, or that would write through
// one, is refused, and so is a symlink whose target is absolute, climbs
// with ".." past the directory's top, or has a ".." after a name (which
// the kernel resolves through that name, a symlink maybe). So no link
// made here leads out of the directory, however later entries use it.
// Any refusal refuses the whole upload.
func (b *build) unpack(root *os.Root, f *os.File, dest string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tmp := tempName(dest)
	if err := root.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = root.RemoveAll(tmp)
		}
	}()
	dr, err := root.OpenRoot(tmp)
	if err != nil {
		return err
	}
	defer dr.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := unpackEntry(dr, h, tr); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	}
	if _, err := root.Lstat(dest); err == nil {
		if err := root.RemoveAll(dest); err != nil {
			return err
		}
	}
	if err := root.Rename(tmp, dest); err != nil {
		return err
	}
	ok = true
	return nil
}

// errTarEscape is the error of a tar entry that would lead out of the
// directory it is unpacked into.
var errTarEscape = errors.New("refused: it would lead out of the upload's directory")

// unpackEntry makes one tar entry in dr.
func unpackEntry(dr *os.Root, h *tar.Header, r io.Reader) error {
	name := filepath.Clean(filepath.FromSlash(h.Name))
	if !filepath.IsLocal(name) {
		return fmt.Errorf("the name leaves the directory: %w", errTarEscape)
	}
	// Every parent must be a real directory, made here or by an entry
	// before: never a symlink, whatever it points to.
	parts := strings.Split(name, string(filepath.Separator))
	for i := 1; i < len(parts); i++ {
		parent := filepath.Join(parts[:i]...)
		fi, err := dr.Lstat(parent)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := dr.Mkdir(parent, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("its parent %q is a symlink: %w", filepath.ToSlash(parent), errTarEscape)
		case !fi.IsDir():
			return fmt.Errorf("its parent %q is not a directory", filepath.ToSlash(parent))
		}
	}
	if name == "." {
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		return errors.New("only a directory may be the upload's top")
	}
	fi, err := dr.Lstat(name)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%q is a symlink already: %w", h.Name, errTarEscape)
	case err == nil && h.Typeflag == tar.TypeDir && fi.IsDir():
		return nil
	case err == nil && (h.Typeflag != tar.TypeReg || !fi.Mode().IsRegular()):
		return fmt.Errorf("%q exists already", h.Name)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return dr.Mkdir(name, 0o755)
	case tar.TypeReg:
		w, err := dr.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode).Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if err := checkLinkTarget(len(parts)-1, h.Linkname); err != nil {
			return fmt.Errorf("symlink to %q: %w", h.Linkname, err)
		}
		return dr.Symlink(h.Linkname, name)
	}
	return nil // hard links, devices, FIFOs: not unpacked, as the worker sends none
}

// checkLinkTarget checks the target of a symlink made depth directories
// below the top of the directory unpacked: relative, its ".." all leading
// and at most depth of them. Its parents are real directories (see
// unpackEntry), so the ".." climb those; the rest only goes down, through
// directories or symlinks checked the same way: the link resolves inside.
func checkLinkTarget(depth int, target string) error {
	if target == "" {
		return errors.New("empty target")
	}
	if filepath.IsAbs(target) || filepath.VolumeName(target) != "" {
		return fmt.Errorf("the target is absolute: %w", errTarEscape)
	}
	up, down := 0, 0
	for _, c := range strings.Split(filepath.ToSlash(target), "/") {
		switch c {
		case "", ".":
		case "..":
			if down > 0 {
				return fmt.Errorf("a \"..\" follows a name, which may be a symlink: %w", errTarEscape)
			}
			up++
		default:
			down++
		}
	}
	if up > depth {
		return errTarEscape
	}
	return nil
}

// runDownload sends src (nil: the file sc.MasterSrc) to the worker.
func (b *build) runDownload(ctx context.Context, step store.Step, sc config.Step, src io.Reader, log *slog.Logger) int {
	if src == nil {
		root, p, err := b.masterRoot(sc.MasterSrc)
		if err != nil {
			return b.failStep(step, err.Error())
		}
		defer root.Close()
		guard := b.e.masterGuard()
		if err := guard.Check(root, p, false); err != nil {
			log.Warn("transfer refused", "mastersrc", sc.MasterSrc, "err", err)
			return b.failStep(step, fmt.Sprintf("step %q: mastersrc refused: %v", sc.Name, err))
		}
		f, err := root.Open(p)
		if err != nil {
			return b.failStep(step, err.Error())
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return b.failStep(step, sc.MasterSrc+" is not a regular file")
		}
		if err := guard.Opened(sc.MasterSrc, fi); err != nil {
			log.Warn("transfer refused", "mastersrc", sc.MasterSrc, "err", err)
			return b.failStep(step, fmt.Sprintf("step %q: mastersrc refused: %v", sc.Name, err))
		}
		src = f
	}
	_, res := b.runCommand(ctx, step, protocol.Command{
		Builder: b.cfg.WorkerDir(),
		Download: &protocol.DownloadCommand{
			Workdir:   sc.Workdir,
			Path:      sc.WorkerDest,
			MaxSize:   sc.MaxSize,
			Mode:      os.FileMode(sc.FileMode).Perm(),
			BlockSize: sc.BlockSize,
			Source:    src,
		},
	}, log)
	return res
}
