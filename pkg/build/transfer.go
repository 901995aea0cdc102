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
	"strconv"
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
	case "shell_sequence", "json_string_download", "json_properties_download", "multiple_file_upload":
		return b.runMoreStep(ctx, step, sc, log) // steps_more.go
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
// start does, and returns FAILURE. When the step has a stdio log already
// (a multiple_file_upload's listing, a command run before), msg goes to a
// new log "err.text" (or "err.text-2"...), so that the step's logs always
// say why it failed.
func (b *build) failStep(step store.Step, msg string) int {
	st := b.e.st
	if l, err := st.AddLog(step.ID, "stdio", "s"); err == nil {
		_, err := st.AppendLog(l.ID, "h"+msg+"\n")
		b.check(err)
		b.check(st.FinishLog(l.ID))
		return store.Failure
	}
	for i := 1; i <= 10; i++ {
		name := "err.text"
		if i > 1 {
			name += "-" + strconv.Itoa(i)
		}
		l, err := st.AddLog(step.ID, name, "t")
		if err != nil {
			continue
		}
		_, err = st.AppendLog(l.ID, msg+"\n")
		b.check(err)
		b.check(st.FinishLog(l.ID))
		return store.Failure
	}
	b.log.Error("step failed, and no log was free to say why", "step", step.ID, "reason", msg)
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
	return b.runUploadLog(ctx, step, sc, "stdio", log)
}

// runUploadLog is runUpload with the command's output in the log called
// logName.
func (b *build) runUploadLog(ctx context.Context, step store.Step, sc config.Step, logName string, log *slog.Logger) int {
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
	_, res := b.runCommandLog(ctx, step, logName, protocol.Command{
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
	var skipped []string
	if dir {
		skipped, err = unpack(ctx, root, f, dest)
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
	if err != nil && ctx.Err() != nil {
		// Stopped while unpacking: as a command interrupted.
		log.Info("upload stopped", "masterdest", sc.MasterDest, "err", err)
		b.writeText(step, "err.text", "stopped writing "+sc.MasterDest+": "+err.Error())
		if errors.Is(cause(ctx), ErrShutdown) {
			return store.Retry
		}
		return store.Cancelled
	}
	if err != nil {
		// The command's stdio log is complete: say why in err.text.
		log.Warn("upload refused", "masterdest", sc.MasterDest, "err", err)
		b.writeText(step, "err.text", "cannot write "+sc.MasterDest+": "+err.Error())
		return store.Failure
	}
	if len(skipped) > 0 {
		// buildbot's tarfile.extractall makes FIFOs, and devices when
		// the master runs as root; gbb makes neither, and says so.
		b.writeText(step, "skipped", strings.Join(skipped, "\n"))
		return store.Warnings
	}
	return store.Success
}

// Limits of a directory upload's tar, checked per entry before anything
// is made: the bytes of an entry's path below the upload's top (Linux's
// PATH_MAX), of one name in it (NAME_MAX), the names in it, and the
// entries in the archive. An entry over one refuses the upload. Past
// maxTarSkippedLines, skipped entries are only counted.
const (
	maxTarPath         = 4096
	maxTarName         = 255
	maxTarDepth        = 256
	maxTarEntries      = 1_000_000
	maxTarSkippedLines = 20
)

// unpack extracts the tar file f into a temporary directory and puts it in
// place of dest. Each entry is resolved against what the entries before it
// made: an entry whose parent is a symlink, or that would write through
// one, is refused, and so is a symlink whose target is absolute, climbs
// with ".." past the directory's top, or has a ".." after a name (which
// the kernel resolves through that name, a symlink maybe). So no link
// made here leads out of the directory, however later entries use it.
// A hard link must name a regular file the archive made before it.
// Any refusal refuses the whole upload, and so does ctx ending (checked
// per entry and per read of f). Devices and FIFOs are not made: skipped
// says which (at most maxTarSkippedLines lines, then a count).
//
// The cost is linear in the archive: unpack keeps the directories of the
// last entry open, so an entry is made by name in its parent, not by
// walking its whole path again.
func unpack(ctx context.Context, root *os.Root, f *os.File, dest string) (skipped []string, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tmp := tempName(dest)
	if err := root.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = root.RemoveAll(tmp)
		}
	}()
	dr, err := root.OpenRoot(tmp)
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	u := newUnpacker(dr)
	defer u.close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// The files of a plain archive are in it: what they hold adds up to
	// less than its size. A sparse entry (which archive/tar expands)
	// holds what it says it holds, as zeros: a few hundred bytes that
	// would write gigabytes.
	var data int64
	tr := tar.NewReader(ctxReader{ctx: ctx, r: f})
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if n >= maxTarEntries {
			return nil, fmt.Errorf("more than %d entries in the archive", maxTarEntries)
		}
		if h.Typeflag == tar.TypeReg {
			if data += h.Size; data > fi.Size() {
				return nil, fmt.Errorf("tar entry %s: its files would hold %d bytes, more than the %d-byte archive itself (a sparse file?): refused", quoteName(h.Name), data, fi.Size())
			}
		}
		// Reads of a sparse entry's holes do not read f: the copy
		// checks ctx itself.
		if err := u.entry(h, ctxReader{ctx: ctx, r: tr}); err != nil {
			return nil, fmt.Errorf("tar entry %s: %w", quoteName(h.Name), err)
		}
	}
	if _, err := root.Lstat(dest); err == nil {
		if err := root.RemoveAll(dest); err != nil {
			return nil, err
		}
	}
	if err := root.Rename(tmp, dest); err != nil {
		return nil, err
	}
	ok = true
	return u.skippedLines(), nil
}

// quoteName is a tar entry's name for a message: quoted, and cut after
// 200 bytes.
func quoteName(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", s[:200], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// ctxReader reads r until ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// errTarEscape is the error of a tar entry that would lead out of the
// directory it is unpacked into.
var errTarEscape = errors.New("refused: it would lead out of the upload's directory")

// unpacker makes the entries of one tar in top, in order.
type unpacker struct {
	top *os.Root
	// dirs are the names of the path of the directory the last entry
	// was made in, and open[i] is the directory dirs[:i] (open[0] is
	// top): each checked a real directory, made by this unpack.
	dirs     []string
	open     []*os.Root
	skipped  []string
	nskipped int
}

func newUnpacker(top *os.Root) *unpacker {
	return &unpacker{top: top, open: []*os.Root{top}}
}

// close closes the directories held open.
func (u *unpacker) close() { u.leave(0) }

// leave closes the directories below the first n names of u.dirs.
func (u *unpacker) leave(n int) {
	for i := len(u.dirs); i > n; i-- {
		u.open[i].Close()
	}
	u.dirs, u.open = u.dirs[:n], u.open[:n+1]
}

// enter makes u's current directory the one of the names parents, making
// each missing one; each must be a real directory, never a symlink,
// whatever it points to. It opens only the names not open already.
func (u *unpacker) enter(parents []string) error {
	k := 0
	for k < len(u.dirs) && k < len(parents) && u.dirs[k] == parents[k] {
		k++
	}
	u.leave(k)
	for _, name := range parents[k:] {
		cur := u.open[len(u.open)-1]
		at := func() string { return quoteName(strings.Join(append(u.dirs[:len(u.dirs):len(u.dirs)], name), "/")) }
		fi, err := cur.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := cur.Mkdir(name, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("its parent %s is a symlink: %w", at(), errTarEscape)
		case !fi.IsDir():
			return fmt.Errorf("its parent %s is not a directory", at())
		}
		d, err := cur.OpenRoot(name)
		if err != nil {
			return err
		}
		u.dirs = append(u.dirs, name)
		u.open = append(u.open, d)
	}
	return nil
}

// skip notes an entry not made.
func (u *unpacker) skip(h *tar.Header, what string) {
	u.nskipped++
	if len(u.skipped) < maxTarSkippedLines {
		u.skipped = append(u.skipped, fmt.Sprintf("skipped %s: %s, not unpacked", quoteName(h.Name), what))
	}
}

// skippedLines says which entries were skipped, or nil.
func (u *unpacker) skippedLines() []string {
	if more := u.nskipped - len(u.skipped); more > 0 {
		return append(u.skipped, fmt.Sprintf("skipped %d more entries (devices, FIFOs or other special files)", more))
	}
	return u.skipped
}

// checkTarName checks the limits of an entry's cleaned name, split in
// parts.
func checkTarName(name string, parts []string) error {
	if len(name) > maxTarPath {
		return fmt.Errorf("its path is %d bytes long, more than %d", len(name), maxTarPath)
	}
	if len(parts) > maxTarDepth {
		return fmt.Errorf("its path is %d names deep, more than %d", len(parts), maxTarDepth)
	}
	for _, p := range parts {
		if len(p) > maxTarName {
			return fmt.Errorf("a name in its path is %d bytes long, more than %d", len(p), maxTarName)
		}
	}
	return nil
}

// entry makes one tar entry.
func (u *unpacker) entry(h *tar.Header, r io.Reader) error {
	name := filepath.Clean(filepath.FromSlash(h.Name))
	if h.Name == "/" && h.Typeflag == tar.TypeDir {
		// buildbot-worker's directory upload (tarfile's add(path, ''))
		// names its top "/".
		name = "."
	}
	if name == "." {
		if h.Typeflag == tar.TypeDir {
			return nil
		}
		return errors.New("only a directory may be the upload's top")
	}
	if !filepath.IsLocal(name) {
		return fmt.Errorf("the name leaves the directory: %w", errTarEscape)
	}
	parts := strings.Split(name, string(filepath.Separator))
	if err := checkTarName(name, parts); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeChar:
		u.skip(h, "a character device")
		return nil
	case tar.TypeBlock:
		u.skip(h, "a block device")
		return nil
	case tar.TypeFifo:
		u.skip(h, "a FIFO")
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		u.skip(h, fmt.Sprintf("of tar type %q", h.Typeflag))
		return nil
	}
	if err := u.enter(parts[:len(parts)-1]); err != nil {
		return err
	}
	dir, base := u.open[len(u.open)-1], parts[len(parts)-1]
	fi, err := dir.Lstat(base)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink already: %w", quoteName(h.Name), errTarEscape)
	case err == nil && h.Typeflag == tar.TypeDir && fi.IsDir():
		return nil
	case err == nil && (h.Typeflag != tar.TypeReg || !fi.Mode().IsRegular()):
		return fmt.Errorf("%s exists already", quoteName(h.Name))
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return dir.Mkdir(base, 0o755)
	case tar.TypeReg:
		w, err := dir.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode).Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if len(h.Linkname) > maxTarPath {
			return fmt.Errorf("symlink target of %d bytes, more than %d", len(h.Linkname), maxTarPath)
		}
		if err := checkLinkTarget(len(parts)-1, h.Linkname); err != nil {
			return fmt.Errorf("symlink to %s: %w", quoteName(h.Linkname), err)
		}
		return dir.Symlink(h.Linkname, base)
	default: // tar.TypeLink
		// A hard link to a symlink would be that symlink elsewhere, its
		// target checked for the wrong place: only regular files.
		target := filepath.Clean(filepath.FromSlash(h.Linkname))
		if len(target) > maxTarPath || !filepath.IsLocal(target) {
			return fmt.Errorf("hard link to %s: %w", quoteName(h.Linkname), errTarEscape)
		}
		tfi, err := u.top.Lstat(target)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", quoteName(h.Linkname), err)
		}
		if !tfi.Mode().IsRegular() {
			return fmt.Errorf("hard link to %s: not a regular file", quoteName(h.Linkname))
		}
		return u.top.Link(target, name)
	}
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
