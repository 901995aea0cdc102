package web

import "net/http"

// securityHeaders sets, on every response, the headers that keep other
// sites from framing our pages (clickjacking a stop or force button) and
// browsers from guessing content types:
//
//   - X-Frame-Options: DENY and Content-Security-Policy: frame-ancestors
//     'none' (the first for older browsers): no page may show ours in a
//     frame, not even our own;
//   - X-Content-Type-Options: nosniff: a log or an artifact served as text
//     is never run as a script or a page;
//   - Referrer-Policy: same-origin: links out of the pages (revlinks, a
//     forge's commit) do not tell the forge the URLs of our pages.
//
// Badges are images, which frame-ancestors does not govern, so READMEs
// still show them.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
