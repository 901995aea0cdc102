// Package testdeb gives tests the Debian tools they need: a test that
// needs nginx, sshd or ip installs the package when the tool is missing,
// and fails loudly when it cannot; it never skips.
package testdeb
