// Package testpg runs a real PostgreSQL, from Debian's package, for the
// tests of one test binary: started once from TestMain, as an unprivileged
// user when the tests run as root, on loopback only, and killed with the
// test binary; each test gets a fresh, empty database of its own. It is
// for tests only.
package testpg
