package build

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
// refused too. Files are written to a temporary name and renamed on
// success; a failed transfer leaves nothing behind.

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
		Builder: b.cfg.Name,
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
		Builder: b.cfg.Name,
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
		log.Warn("upload", "err", err)
		return b.failStep(step, "cannot write "+sc.MasterDest+": "+err.Error())
	}
	return store.Success
}

// unpack extracts the tar file f into a temporary directory and puts it in
// place of dest. Entries that would leave it are refused.
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
		name := filepath.FromSlash(strings.TrimSuffix(h.Name, "/"))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("tar entry %q leaves the directory", h.Name)
		}
		if d := filepath.Dir(name); d != "." {
			if err := dr.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := dr.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			w, err := dr.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if filepath.IsAbs(h.Linkname) || !filepath.IsLocal(filepath.Join(filepath.Dir(name), h.Linkname)) {
				return fmt.Errorf("tar entry %q: symlink to %q leaves the directory", h.Name, h.Linkname)
			}
			if err := dr.Symlink(h.Linkname, name); err != nil {
				return err
			}
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

// runDownload sends src (nil: the file sc.MasterSrc) to the worker.
func (b *build) runDownload(ctx context.Context, step store.Step, sc config.Step, src io.Reader, log *slog.Logger) int {
	if src == nil {
		root, p, err := b.masterRoot(sc.MasterSrc)
		if err != nil {
			return b.failStep(step, err.Error())
		}
		defer root.Close()
		f, err := root.Open(p)
		if err != nil {
			return b.failStep(step, err.Error())
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return b.failStep(step, sc.MasterSrc+" is not a regular file")
		}
		src = f
	}
	_, res := b.runCommand(ctx, step, protocol.Command{
		Builder: b.cfg.Name,
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
