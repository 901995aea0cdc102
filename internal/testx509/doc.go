// Package testx509 makes the certificates of TLS tests: a CA and server
// certificates it signs, written as PEM files into a test's directory.
package testx509
