//go:build !linux && !freebsd

package reporter

import "os/exec"

// dieWithTest does nothing here: TestMain's stopMailServer stops mailpit.
func dieWithTest(*exec.Cmd) {}
