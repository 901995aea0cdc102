// Package daemon starts and stops the gbb programs as background daemons.
//
// Start re-executes the running binary, detached in its own session, and
// waits for the child to report through an inherited pipe (fd 3, named by
// the GBB_DAEMON_NOTIFY environment variable) that it is ready, or why it
// failed. WritePID and Stop manage the pid file. OpenLog opens a program's
// log file, private to its user (LogMode, 0600), and reopens it when asked
// (ReopenLogs sends ReopenSignal), so that newsyslog can rotate it.
package daemon
