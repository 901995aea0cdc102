// Package build assigns build requests to connected workers and runs their
// builds, step by step, recording everything in the store.
package build
