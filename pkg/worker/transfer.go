package worker

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// This file runs the file commands (mkdir, rmdir, remove_file) and the
// transfers (upload of a file or a directory as tar, download). Every path
// is opened through an os.Root on BASEDIR/<builder>/, so that "..",
// absolute paths and symlinks leading out of it are refused.

// ErrTooLarge is returned (wrapped) when a transfer goes over its MaxSize.
var ErrTooLarge = errors.New("maximum size exceeded")

// builderRoot opens BASEDIR/<builder>/, creating it.
func (e *Executor) builderRoot(builder string) (*os.Root, error) {
	dir, err := e.workdir(builder, "")
	if err != nil {
		return nil, err
	}
	return os.OpenRoot(dir)
}

// localPath joins a workdir and a path relative to it into a path relative
// to the builder's directory, refusing one that is absolute or leaves it.
func localPath(workdir, p string) (string, error) {
	if workdir == "" {
		workdir = "."
	}
	if !filepath.IsLocal(workdir) {
		return "", fmt.Errorf("workdir %q is absolute or escapes the builder's directory", workdir)
	}
	if p == "" || !filepath.IsLocal(p) {
		return "", fmt.Errorf("path %q is absolute or escapes the builder's directory", p)
	}
	return filepath.Join(workdir, p), nil
}

// failed is the Result of a file command that could not be done; the
// master writes err in the step's log.
func failed(err error) protocol.Result {
	return protocol.Result{ExitCode: 1, Err: err.Error()}
}

func header(out func(protocol.Output), format string, args ...any) {
	out(protocol.Output{Stream: protocol.Header, Data: fmt.Appendf(nil, format+"\n", args...)})
}

func (e *Executor) runFile(builder string, f *protocol.FileCommand, out func(protocol.Output)) protocol.Result {
	root, err := e.builderRoot(builder)
	if err != nil {
		return failed(err)
	}
	defer root.Close()
	p, err := localPath("", f.Path)
	if err != nil {
		return failed(err)
	}
	switch f.Op {
	case protocol.Mkdir:
		header(out, "mkdir %s", filepath.Join(root.Name(), p))
		err = root.MkdirAll(p, 0o755)
	case protocol.Rmdir:
		header(out, "rmdir %s", filepath.Join(root.Name(), p))
		if filepath.Clean(p) == "." {
			err = errors.New("refusing to remove the builder's directory itself")
		} else {
			err = root.RemoveAll(p)
		}
	case protocol.RemoveFile:
		header(out, "rmfile %s", filepath.Join(root.Name(), p))
		var fi os.FileInfo
		if fi, err = root.Lstat(p); err == nil && fi.IsDir() {
			err = fmt.Errorf("%s is a directory", p)
		} else if err == nil {
			err = root.Remove(p)
		}
	default:
		err = fmt.Errorf("unknown file operation %d", f.Op)
	}
	if err != nil {
		return failed(err)
	}
	return protocol.Result{}
}

// limitWriter counts what goes through it and fails past max (0: no limit).
type limitWriter struct {
	w   io.Writer
	max int64
	n   int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.max > 0 && l.n+int64(len(p)) > l.max {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, l.max)
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

func (e *Executor) runUpload(ctx context.Context, builder string, u *protocol.UploadCommand, out func(protocol.Output)) protocol.Result {
	root, err := e.builderRoot(builder)
	if err != nil {
		return failed(err)
	}
	defer root.Close()
	p, err := localPath(u.Workdir, u.Path)
	if err != nil {
		return failed(err)
	}
	if u.Sink == nil {
		return failed(errors.New("upload has nowhere to send to"))
	}
	sink := &limitWriter{w: &ctxWriter{ctx: ctx, w: u.Sink}, max: u.MaxSize}
	header(out, "sending %s", filepath.Join(root.Name(), p))
	if u.Directory {
		err = sendTar(root, p, sink, blockSize(u.BlockSize))
	} else {
		err = sendFile(root, p, sink, u.MaxSize, blockSize(u.BlockSize))
	}
	if err != nil {
		if ctx.Err() != nil {
			return protocol.Result{ExitCode: -1, Interrupted: true, Err: err.Error()}
		}
		return failed(err)
	}
	header(out, "sent %d bytes", sink.n)
	return protocol.Result{}
}

// ctxWriter stops writing once ctx is done (an interrupted transfer).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("interrupted: %w", err)
	}
	return c.w.Write(p)
}

func sendFile(root *os.Root, p string, w io.Writer, maxSize int64, block int) error {
	f, err := root.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	if maxSize > 0 && fi.Size() > maxSize {
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, p, fi.Size(), maxSize)
	}
	_, err = io.CopyBuffer(onlyWriter{w}, onlyReader{f}, make([]byte, block))
	return err
}

// onlyWriter hides a writer's ReadFrom, so io.CopyBuffer uses its buffer
// (the transfer's block size).
type onlyWriter struct{ io.Writer }

// sendTar writes dir's contents to w as an uncompressed tar stream; the
// names are relative to dir, symlinks are sent as symlinks.
func sendTar(root *os.Root, dir string, w io.Writer, block int) error {
	fi, err := root.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	bw := &blockWriter{w: w, buf: make([]byte, 0, block)}
	tw := tar.NewWriter(bw)
	fsys := root.FS()
	base := filepath.ToSlash(dir)
	err = fs.WalkDir(fsys, base, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == base {
			return nil
		}
		rel := strings.TrimPrefix(name, base+"/")
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(filepath.FromSlash(name)); err != nil {
				return err
			}
		}
		if !info.Mode().IsRegular() && !info.IsDir() && link == "" {
			return nil // sockets, devices, pipes: not sent
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := fsys.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.flush()
}

// blockWriter joins small writes (tar headers) into blocks.
type blockWriter struct {
	w   io.Writer
	buf []byte
}

func (b *blockWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(b.buf)-len(b.buf))
		b.buf = append(b.buf, p[:k]...)
		p = p[k:]
		if len(b.buf) == cap(b.buf) {
			if err := b.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (b *blockWriter) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

func (e *Executor) runDownload(ctx context.Context, builder string, d *protocol.DownloadCommand, out func(protocol.Output)) protocol.Result {
	root, err := e.builderRoot(builder)
	if err != nil {
		return failed(err)
	}
	defer root.Close()
	p, err := localPath(d.Workdir, d.Path)
	if err != nil {
		return failed(err)
	}
	if d.Source == nil {
		return failed(errors.New("download has nothing to read from"))
	}
	header(out, "receiving %s", filepath.Join(root.Name(), p))
	n, err := receiveFile(root, p, d)
	if err != nil {
		if ctx.Err() != nil {
			return protocol.Result{ExitCode: -1, Interrupted: true, Err: err.Error()}
		}
		return failed(err)
	}
	header(out, "received %d bytes", n)
	return protocol.Result{}
}

// receiveFile writes d's data to a temporary file next to p and renames it
// to p once it is complete; on failure no file is left.
func receiveFile(root *os.Root, p string, d *protocol.DownloadCommand) (n int64, err error) {
	if dir := filepath.Dir(p); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	if fi, err := root.Lstat(p); err == nil && fi.IsDir() {
		return 0, fmt.Errorf("%s is a directory", p)
	}
	tmp := tempName(p)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = root.Remove(tmp)
		}
	}()
	lw := &limitWriter{w: f, max: d.MaxSize}
	if _, err = io.CopyBuffer(onlyWriter{lw}, onlyReader{d.Source}, make([]byte, blockSize(d.BlockSize))); err != nil {
		return lw.n, err
	}
	if d.Mode != 0 {
		if err = f.Chmod(d.Mode.Perm()); err != nil {
			return lw.n, err
		}
	}
	if err = f.Close(); err != nil {
		return lw.n, err
	}
	if err = root.Rename(tmp, p); err != nil {
		return lw.n, err
	}
	return lw.n, nil
}

// onlyReader hides a reader's WriteTo, so io.CopyBuffer uses its buffer.
type onlyReader struct{ io.Reader }

// tempName is a fresh name next to p for a file being written.
func tempName(p string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	dir, file := filepath.Split(p)
	return filepath.Join(dir, "."+file+".gbb-"+hex.EncodeToString(b[:]))
}

// blockSize is a transfer's chunk size: n, or protocol.MaxChunk when n is
// zero or larger.
func blockSize(n int) int {
	if n <= 0 || n > protocol.MaxChunk {
		return protocol.MaxChunk
	}
	return n
}
