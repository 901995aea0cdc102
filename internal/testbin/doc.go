// Package testbin builds gbb-master and gbb-worker for the tests that run
// them as processes (e2e, deploy) the way `make build` ships them, and
// collects the data races the race detector finds in those processes.
package testbin
