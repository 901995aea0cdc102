// Package metrics counts what a master does and serves it in Prometheus's
// format: one registry per master, fed by the store's events, a few hooks
// (pollers, reporters, HTTP, worker streams) and gauges read at scrape time.
package metrics
