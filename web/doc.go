// Package web serves buildbot's REST data API v2, JSON-RPC control and the HTML pages.
//
// The API copies buildbot 3.7's resource paths, field names, envelope
// ({"builds": [...], "meta": {"total": N}}) and query parameters (field,
// limit, offset, order, property and field filters), so that scripts and
// tools written for buildbot keep working. Every link the HTML pages make is
// relative, so the whole site works behind a proxy that strips a path prefix.
package web
