// Package ui serves the HTML pages: the home page, builders, builds and
// their logs, workers, changes, pending requests, console, grid and
// waterfall, the charts they draw as SVG (charts.go, trends.go), the
// login and logout pages, the force and control forms, the badges, and
// the templates and static files they use. Every link a page makes is
// relative, so the whole site works behind a proxy that strips a path
// prefix.
//
// It reads what it shows from the store and through web/api's read model
// (its path resolvers and errors; its Act does what a form asks), never by calling an API
// handler, and asks web/auth what the user may do. It must not know the
// router's middleware, sessions' cookies or the live streams: the server
// hands it its guard of POST forms, and the forms reach it already
// decoded and authorized (api.Authorize).
package ui
