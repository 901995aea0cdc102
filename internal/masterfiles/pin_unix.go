//go:build unix

package masterfiles

import "os"

// pin opens the regular file p whose Stat is fi and returns it, open, when
// it is still that file: while it is open, the filesystem cannot free its
// inode and give the number to another file. nil when it cannot be opened
// (then the master cannot read it either).
func pin(p string, fi os.FileInfo) *os.File {
	if !fi.Mode().IsRegular() {
		return nil // a FIFO would block the open
	}
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	if now, err := f.Stat(); err != nil || !os.SameFile(now, fi) {
		f.Close()
		return nil
	}
	return f
}
