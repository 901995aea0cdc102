//go:build linux || freebsd

package bbimport

import "syscall"

// loaderSysProcAttr puts the loader in a process group of its own (killed
// whole at the timeout) and has the kernel SIGKILL it when gbb-master
// dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG, FreeBSD's procctl
// PROC_PDEATHSIG_CTL). The signal comes when the thread that started it
// ends: LoadWith keeps that thread until the loader is waited for.
func loaderSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
