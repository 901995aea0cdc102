package web

import "net/http"

// ContentSecurityPolicy is the policy of every response: the pages may
// run only the site's own scripts (static/live.js) and use only its own
// style sheets, fetch and stream only from the site, post forms only to
// it, and be framed by no one. No inline script, style element or style
// attribute, no eval, no plugin, no <base> may change where relative
// links go. A log's colours are classes (web/ui/ansi.go), so the pages
// need nothing more. Badges are images, which frame-ancestors does not
// govern, so READMEs elsewhere still show them.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// hsts is the Strict-Transport-Security of responses served over TLS by
// the master itself: browsers that saw it use https for the host for half
// a year. (Behind nginx, nginx sets it: deploy/freebsd/nginx.conf.)
const hsts = "max-age=15552000"

// securityHeaders sets, on every response, the headers that keep other
// sites from framing our pages (clickjacking a stop or force button),
// injected markup from running, and browsers from guessing content types:
//
//   - Content-Security-Policy (ContentSecurityPolicy), with frame-ancestors
//     'none', and X-Frame-Options: DENY for older browsers: no page may
//     show ours in a frame, not even our own;
//   - X-Content-Type-Options: nosniff: a log or an artifact served as text
//     is never run as a script or a page;
//   - Referrer-Policy: same-origin: links out of the pages (revlinks, a
//     forge's commit) do not tell the forge the URLs of our pages;
//   - Strict-Transport-Security when the request came over TLS.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", hsts)
		}
		next.ServeHTTP(w, r)
	})
}
