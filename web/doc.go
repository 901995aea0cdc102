// Package web is the master's web server: the router, the order of its
// middleware (request bodies, security headers, who is asking, CSRF
// tokens, the one guard of every POST), the login's cookies, and the
// wiring of its rooms. It serves nothing of its own.
//
// The rooms, each with one job:
//   - web/auth: who is asking and may they, as decisions and errors;
//   - web/api: the REST data API, JSON-RPC, and the one control path;
//   - web/ui: the pages, templates, badges and static files;
//   - web/live: /sse/ and /ws over pkg/events;
//   - web/bbui: buildbot's own UI, when one is installed, and /avatar;
//   - pkg/changesource/hooks: the change hooks, mounted here.
package web
