// Package teststore opens a real store for a test: a bbolt file in the
// test's temporary directory, checked and closed when the test ends. It is
// for tests only.
package teststore
