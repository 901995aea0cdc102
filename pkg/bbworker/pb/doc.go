// Package pb speaks Twisted's Perspective Broker on the master's side, as
// buildbot 3.7's master does with its workers: banana framing (with the
// "pb" dialect's vocabulary), jelly serialization of the plain values that
// cross, the cred login (login/respond with the worker's password), and
// the master-side objects a buildbot-worker calls back (the perspective,
// remote commands, file writers and readers). Each logged-in worker is a
// bbworker.Conn.
package pb
