package web

import (
	"cmp"
	"fmt"
	"net/http"

	"github.com/gbb-ci/gbb/web/auth"
)

// The server's side of the live streams (web/live): where a WebSocket may
// come from. What an event shows is web/api's (EventMessage).

// wsOriginOK accepts a WebSocket from a client that sends no Origin (not a
// browser), from a browser page of buildbot_url's origin or of the host
// the request was sent to (Host, or X-Forwarded-Host as a proxy sets it),
// or from a browser that proves the page is the site's own although the
// master cannot tell from the Origin (behind buildbot's nginx recipe, which
// sets no Host, with a buildbot_url that is not the browser's URL): it
// says so (Sec-Fetch-Site: same-origin; Chromium sends none on a
// WebSocket), or the URL carries the page's CSRF token
// (?csrf_token=, from its <meta name="csrf-token">) with the cookie it
// belongs to. It logs why it refuses any other.
func (s *Server) wsOriginOK(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin" || auth.OriginOK(r, o, s.site().origin) || auth.CheckQueryToken(r) {
		return true
	}
	fwd := r.Header.Get("X-Forwarded-Host")
	reason := fmt.Sprintf("origin %s is neither buildbot_url's (%s) nor the host the request was sent to (Host %s, X-Forwarded-Host %q), and the URL has no valid %s", o, cmp.Or(s.site().origin, "not set"), r.Host, fwd, auth.CSRFField)
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		reason += ", and the browser says the page is " + site
	}
	s.log.Warn("websocket refused", "remote", r.RemoteAddr, "origin", o, "reason", reason)
	return false
}
