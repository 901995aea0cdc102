// Package worker runs the commands a master sends, on the worker's host.
//
// Executor implements protocol.Executor. A shell command runs in
// BASEDIR/<builder>/<workdir> (created when missing), in its own process
// group, with its stdout and stderr streamed as they come. Timeouts and
// interrupts kill the whole group (SIGTERM then SIGKILL after SigtermTime,
// or SIGKILL at once), and when the command's main process exits, whatever
// it left behind in its group is killed too: no process outlives its
// command (except one that leaves the group on purpose, with setsid).
//
// A git command checks out a revision in BASEDIR/<builder>/<workdir> with
// go-git, as buildbot's Git step does, so the worker needs no git binary;
// a repository on the worker's own filesystem is read directly.
package worker
