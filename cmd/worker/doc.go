// Command gbb-worker runs the commands its gbb master sends, on this host.
//
//	gbb-worker create-worker DIR MASTER NAME PASSWORD
//	gbb-worker start [--nodaemon] DIR
//	gbb-worker stop DIR
//	gbb-worker reopen-logs DIR
//	gbb-worker -master HOST:PORT[,HOST:PORT...] -name NAME -password PASS [-basedir DIR]
//
// create-worker writes DIR/worker.toml, DIR/info/admin and DIR/info/host.
// start runs the worker described by DIR/worker.toml in the background
// (log DIR/worker.log, pid DIR/worker.pid), or in the foreground with
// --nodaemon; stop stops it. worker.log is created 0600 (it can hold
// what the builds printed); reopen-logs (or SIGUSR2) makes the worker
// reopen it after log rotation. The last form runs a worker in the
// foreground from flags alone, logging to stderr. Both forms lock
// DIR/.gbb-worker.lock for the worker's life: a second worker on the same
// directory is refused (exit 1, naming the first's pid) rather than run
// builds in its directories and kill the commands it still runs.
//
// MASTER, -master and worker.toml's master may list several masters,
// comma-separated (in worker.toml also masters = ["a:9989", "b:9989"]):
// the worker serves the first that welcomes it, and when that connection
// ends it tries the next at once, round-robin, backing off between rounds
// that reached none. An entry HOST:PORT#sha256:HEX pins that master's CA
// instead of the TLS settings; the others apply to every master. A master
// that refuses the worker's password is left alone for ten max backoffs;
// when every master has refused it, the worker exits 1.
//
// SIGTERM or SIGINT stops the worker in three stages, as buildkite's
// agent: the first makes it take no new command, let the running ones
// finish and report their results, then detach from its master and exit
// 0 (the master ends those builds RETRY and builds them again, since
// their next steps cannot run here); the second interrupts the running
// commands (their process groups are killed) and reports them, then
// exits 0 (their builds end RETRY too); the third exits at once, with
// code 3 (the next start kills the commands left running). stop sends
// one SIGTERM and waits 60s: a longer step outlives it, and a second stop
// interrupts it. Each stage is logged. A master that refuses the
// worker's name or password makes it exit 1.
package main
