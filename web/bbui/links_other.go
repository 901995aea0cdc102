//go:build !unix

package bbui

import "os"

// links is the number of names fi's file has; where the system does not
// say, one.
func links(os.FileInfo) uint64 { return 1 }
