// Package bench measures gbb side by side with Python buildbot 3.7 (start-up,
// idle memory, latency, throughput, log throughput, a big store, change to
// build) and prints the table that BENCHMARKS.md keeps; `make bench` runs it.
//
// All of its code is in its tests: go vet compiles it, and `go test ./...`
// runs no benchmark. See BENCHMARKS.md for the environment variables.
package bench
