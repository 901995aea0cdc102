// Command gbb-worker runs the commands its gbb master sends, on this host.
//
//	gbb-worker create-worker DIR MASTER NAME PASSWORD
//	gbb-worker start [--nodaemon] DIR
//	gbb-worker stop DIR
//	gbb-worker reopen-logs DIR
//	gbb-worker -master HOST:PORT -name NAME -password PASS [-basedir DIR]
//
// create-worker writes DIR/worker.toml, DIR/info/admin and DIR/info/host.
// start runs the worker described by DIR/worker.toml in the background
// (log DIR/worker.log, pid DIR/worker.pid), or in the foreground with
// --nodaemon; stop stops it. worker.log is created 0600 (it can hold
// what the builds printed); reopen-logs (or SIGUSR2) makes the worker
// reopen it after log rotation. The last form runs a worker in the
// foreground from flags alone, logging to stderr.
//
// SIGTERM or SIGINT stops the worker, killing its running commands. A
// master that refuses the worker's name or password makes it exit 1.
package main
