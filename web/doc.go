// Package web is the master's web server: the router, the order of its
// middleware (request bodies, security headers, who is asking, CSRF
// tokens, the guard of every POST), and the wiring of its rooms. It also
// still holds the HTML pages, their templates, badges and static files,
// and the login pages (issue 15 moves the pages to web/ui).
//
// The rooms, each with one job:
//   - web/auth: who is asking and may they, as decisions and errors;
//   - web/api: the REST data API, JSON-RPC, and the one control path;
//   - web/live: /sse/ and /ws over pkg/events;
//   - pkg/changesource/hooks: the change hooks, mounted here.
//
// Every link the HTML pages make is relative, so the whole site works
// behind a proxy that strips a path prefix.
package web
