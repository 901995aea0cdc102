// Package api serves buildbot's REST data API v2 and its JSON-RPC
// controls, and holds the one control path that every POST of the site
// goes through (Authorize, authz.go): it decodes the request once, asks
// web/auth once whether its user may, and hands the decoded Call to the
// handler that acts.
//
// The API copies buildbot 3.7's resource paths, field names, envelope
// ({"builds": [...], "meta": {"total": N}}) and query parameters (field,
// limit, offset, order, property and field filters), so that scripts and
// tools written for buildbot keep working; the resources' encoding
// (resources.go) and the query language (query.go) live here, and the
// live streams show events in that encoding (EventMessage).
//
// It must not know the pages: it imports no web/ui and renders no HTML.
// Authorize returns its refusals (Refusal) for the server's guard to
// answer: the error page for a form, a JSON-RPC error for a call. Act is
// the one act of both the JSON-RPC controls and the pages' forms.
package api
