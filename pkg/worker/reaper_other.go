//go:build !linux && !freebsd

package worker

import (
	"errors"
	"runtime"
)

// errNoReaper says this system has no way, in this worker, to identify a
// process across a restart: commands are not recorded, and a worker
// killed with SIGKILL leaves its commands running.
var errNoReaper = errors.New("identifying processes across a restart is not supported on " + runtime.GOOS)

func readProc(int) (procInfo, error)     { return procInfo{}, errNoReaper }
func groupProcs(int) ([]procInfo, error) { return nil, errNoReaper }
func bootID() (string, error)            { return "", errNoReaper }
