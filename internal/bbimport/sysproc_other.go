//go:build !linux && !freebsd

package bbimport

import "syscall"

// loaderSysProcAttr puts the loader in a process group of its own. This
// system has no parent-death signal: a loader whose gbb-master is killed
// by SIGKILL runs on until its -timeout cannot stop it (kill its process
// group by hand); SIGINT, SIGTERM and SIGHUP still kill it.
func loaderSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
