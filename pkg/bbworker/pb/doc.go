// Package pb speaks Twisted's Perspective Broker on the master's side, as
// buildbot 3.7's master does with its workers: banana framing (with the
// "pb" dialect's vocabulary), jelly serialization of the plain values that
// cross, the cred login (login/respond with the worker's password), and
// the master-side objects a buildbot-worker calls back (the perspective,
// remote commands, file writers and readers). Each logged-in worker is a
// bbworker.Conn.
//
// The worker's calls on one connection (a command's updates and
// completion, file writes and reads) run on one goroutine, in the order
// the worker sent them: a CommandSink, FileWriter or FileReader method
// that blocks holds up that worker's later calls, but not the answers to
// the master's calls, so it may call the Conn. A command the worker took
// completes exactly once: by the worker's complete, by the first error a
// FileWriter or FileReader of it returns (buildbot-worker 3.7 cannot send
// that failure back), or with ErrConnectionLost when the connection goes.
package pb
