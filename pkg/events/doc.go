// Package events carries the master's events from the store to the live
// views: an in-process bus of routing keys (buildbot's, joined with "/":
// "builds/12/finished") and the records they carry.
//
// The bus keeps a bounded ring of recent events so that a subscriber that
// was away briefly (an SSE client reconnecting with Last-Event-ID) resumes
// without losing any. Publish never blocks: a subscriber that falls too far
// behind is dropped, and resumes from the ring.
package events
