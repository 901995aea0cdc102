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
// A git command checks out a revision in BASEDIR/<builder>/<workdir> by
// running the git binary (from PATH), as buildbot's Git step does: clone or
// fetch -f, checkout -f -B, clean -f -f -d [-x], submodule sync and update
// --init --recursive, rev-parse HEAD. Each git command runs as a shell
// command does (its own process group, recorded for ReapOrphans, killed as
// a group on interrupt), with GIT_TERMINAL_PROMPT=0 and LC_ALL=C, and its
// output streamed under a header naming it; the first that fails ends the
// step with git's exit code.
package worker
