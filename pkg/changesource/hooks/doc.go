// Package hooks turns the change hooks' requests into Changes: POST
// /change_hook/DIALECT in buildbot's dialects (base, github, gitlab,
// gitea), each checked with its secret, and a delivery seen before
// recognized and answered without a new change (deliveries.go).
//
// Its job is a request in, Changes stored through a [Sink], and a JSON
// answer out. It must not know the web server that mounts it: not its
// router, sessions, users, authz, API or pages. The server routes POST
// /change_hook/{dialect} to [Handler.Serve] behind its own middleware
// (bodies, origin check, security headers).
package hooks
