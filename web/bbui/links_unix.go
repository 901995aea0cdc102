//go:build unix

package bbui

import (
	"os"
	"syscall"
)

// links is the number of names fi's file has (its hard links).
func links(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
