// Package scheduler turns force requests (and, later, changes and time) into
// buildsets and build requests in the store.
package scheduler
