// Package daemon starts and stops the gbb programs as background daemons.
//
// Start re-executes the running binary, detached in its own session, and
// waits for the child to report through an inherited pipe (fd 3, named by
// the GBB_DAEMON_NOTIFY environment variable) that it is ready, or why it
// failed. WritePID and Stop manage the pid file.
package daemon
