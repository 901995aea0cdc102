package auth

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// Defence against cross-site requests (CSRF), which must not depend on the
// Host header matching the browser's URL: behind buildbot's documented
// nginx recipe the master sees nginx's upstream address as the Host, and
// buildbot_url may not be the URL the browser uses either.
//
//   - Every POST from a browser that says it comes from another site
//     (Sec-Fetch-Site: cross-site or same-site) is refused.
//   - A page's form carries a token: the session's, for a logged-in
//     browser; else the value of the gbb_csrf cookie (a double-submit
//     token), which another site's page can neither read nor send (the
//     cookie is SameSite=Lax). The pages get the field added to each form
//     that posts (the server's csrfWriter).
//   - A JSON-RPC call is taken only as application/json (web/api's
//     decodeRPC), which another site's page can send only after a CORS
//     preflight that gbb never grants; a call made with a session cookie
//     also carries the session's token in the X-CSRF-Token header, or
//     comes provably from the site's own pages (SameOriginCall), as
//     buildbot's UI's calls do.
//     Scripts (curl, basic auth, bearer tokens) need nothing else.
//   - A WebSocket from a browser is accepted from buildbot_url's origin,
//     the request's scheme and Host or X-Forwarded-Host (a trusted
//     proxy's), or with the page's token in
//     its URL (the server's wsOriginOK); the change hooks check their own
//     secrets.

// AnonCSRFCookie is the cookie of the double-submit token of a browser
// that has no session.
const AnonCSRFCookie = "gbb_csrf"

// CrossSite returns why r is a browser's request made by another site's
// page, or "" when it is not one.
func CrossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
		return ""
	default:
		return "cross-site request refused (Sec-Fetch-Site: " + site + "): use gbb's own pages"
	}
}

// OriginOK reports whether a browser's Origin header o is the site's own:
// siteOrigin (buildbot_url's scheme://host; "" for none), or the scheme
// and host the request was sent to (Host, or X-Forwarded-Host as a proxy
// sets it; https when it came over TLS or X-Forwarded-Proto says so, else
// http). The server drops X-Forwarded-Host and X-Forwarded-Proto from
// every request but its trusted_proxies', so they are believed here.
func OriginOK(r *http.Request, o, siteOrigin string) bool {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if siteOrigin != "" && strings.EqualFold(u.Scheme+"://"+u.Host, siteOrigin) {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); strings.TrimSpace(proto) != "" {
		scheme = strings.TrimSpace(proto)
	}
	if !strings.EqualFold(u.Scheme, scheme) {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	fwd, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
	return fwd != "" && strings.EqualFold(u.Host, strings.TrimSpace(fwd))
}

// SameOriginCall reports whether r, a browser's JSON-RPC call, comes from
// a page of the site itself, as buildbot's own UI's calls do (they carry
// no X-CSRF-Token): its browser says so with Sec-Fetch-Site: same-origin,
// which no page can set; or, from a browser that sends no Sec-Fetch-Site,
// its Origin is the host the request was sent to. Forms still need their
// token.
func SameOriginCall(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
		o := r.Header.Get("Origin")
		return o != "" && OriginOK(r, o, "")
	}
	return false
}

// CheckCSRF reports whether tok, sent with a session's cookie, is the
// session's CSRF token.
func CheckCSRF(tok string, sess *Session) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(sess.CSRF)) == 1
}

// CheckFormToken returns why a form posted by u (nil for anonymous) does
// not carry a valid CSRF token, or "" when it does. The token comes as the
// csrf_token field or the X-CSRF-Token header.
func CheckFormToken(r *http.Request, u *User) string {
	tok := r.PostForm.Get(CSRFField)
	if tok == "" {
		tok = r.Header.Get(CSRFHeader)
	}
	if u != nil && u.Session != nil {
		if !CheckCSRF(tok, u.Session) {
			return "missing or stale CSRF token: reload the page and try again"
		}
		return ""
	}
	c, err := r.Cookie(AnonCSRFCookie)
	if err != nil || !ValidToken(c.Value) {
		return "no CSRF cookie: send this form from gbb's own page (reload it, with cookies enabled)"
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(c.Value)) != 1 {
		return "missing or stale CSRF token: reload the page and try again"
	}
	return ""
}

// CheckQueryToken reports whether r's URL carries, as csrf_token, the
// token of its session or of its gbb_csrf cookie: the page that opened it
// is one of the site's (another site's page can read neither).
func CheckQueryToken(r *http.Request) bool {
	tok := r.URL.Query().Get(CSRFField)
	if tok == "" {
		return false
	}
	if u := UserOf(r); u != nil && u.Session != nil && CheckCSRF(tok, u.Session) {
		return true
	}
	c, err := r.Cookie(AnonCSRFCookie)
	return err == nil && ValidToken(c.Value) && subtle.ConstantTimeCompare([]byte(tok), []byte(c.Value)) == 1
}
