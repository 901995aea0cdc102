// Package testsshd runs OpenSSH's sshd on a loopback port for tests that
// reach a git remote over ssh (the worker's git step, the master's git
// poller). It installs Debian's openssh-server when sshd is missing, and
// fails the test when it cannot; it never skips. Frozen stands in for an
// sshd that accepts connections and never answers.
package testsshd
