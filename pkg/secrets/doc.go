// Package secrets reads the values of %(secret:NAME)s from the configured
// secrets providers: files in a directory (buildbot's SecretInAFile) and
// environment variables.
package secrets
