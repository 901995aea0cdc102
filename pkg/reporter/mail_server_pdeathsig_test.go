//go:build linux || freebsd

package reporter

import (
	"os/exec"
	"syscall"
)

// dieWithTest has cmd killed when the test binary dies (a test timeout,
// a SIGKILL), so that no mailpit outlives it.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
