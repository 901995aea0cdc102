//go:build race

package testbin

// Race is whether this test binary runs with the race detector; the
// binaries Build makes then run with it too.
const Race = true
