// Package store keeps the master's state (masters, builders, workers,
// buildsets, build requests, builds, steps and logs) in bbolt.
//
// A [DB] is safe for concurrent use by many goroutines. No bbolt type appears
// in its API, so that a PostgreSQL implementation can offer the same surface.
//
// Layout: every record lives in its own bucket as JSON, keyed by its id as a
// big-endian uint64. Secondary index buckets, keyed by big-endian ids joined
// together, let the store list the builds of one builder, the requests of one
// buildset, the steps of one build or the incomplete records without scanning
// everything. Log lines are stored as zstd-compressed chunks keyed by log id
// and the number of their first line, so a line range reads only the chunks
// that hold it.
package store
