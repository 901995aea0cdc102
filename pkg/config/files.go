package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxKeyFile bounds what a password_file or secret_file may hold.
const maxKeyFile = 64 << 10

// readKeyFile reads the file a key of t names (relative to the config's
// directory), as a password or secret: a regular file of at most 64 KiB,
// its trailing newline trimmed, not empty. Problems are reported at key.
func (d *decoder) readKeyFile(t *table, key, file string) string {
	if file == "" {
		t.errorf(key, "must not be empty")
		return ""
	}
	path := file
	if !filepath.IsAbs(path) {
		path = filepath.Join(d.dir, path)
	}
	d.keyFile(t, key, path)
	data, err := readSmallFile(path, maxKeyFile)
	if err != nil {
		t.errorf(key, "read %s: %v", path, err)
		return ""
	}
	value := strings.TrimRight(string(data), "\r\n")
	if value == "" {
		t.errorf(key, "%s is empty", path)
	}
	return value
}

// readSmallFile reads a regular file of at most max bytes. Anything else (a
// device, a FIFO, a directory, a bigger file) is refused without reading
// it, so a config naming /dev/zero or a pipe neither exhausts memory nor
// hangs.
func readSmallFile(path string, max int64) ([]byte, error) {
	// Non-blocking, so that opening a FIFO does not wait for a writer; the
	// type is checked on what was opened.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	switch {
	case fi.IsDir():
		return nil, errors.New("is a directory")
	case !fi.Mode().IsRegular():
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", fi.Size(), max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("more than the %d bytes allowed", max)
	}
	return data, nil
}

// unwrapPath drops the path from a *fs.PathError: messages name it already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
