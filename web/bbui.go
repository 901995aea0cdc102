package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/web/auth"
	"github.com/gbb-ci/gbb/web/bbui"
	"github.com/gbb-ci/gbb/web/ui"
)

// Buildbot's own UI (web/bbui), served at /buildbot-ui/ when [www]
// buildbot_ui_dir names one, logs in as buildbot's does: a link to
// auth/login, which asks the browser for basic auth and starts a session,
// and one to auth/logout. Its JSON-RPC calls carry the session cookie but
// no CSRF token: web/api takes them as the site's own when the browser
// says they are (auth.SameOriginCall).

// gbbPrefix is where gbb's own pages are when buildbot's UI is at the
// site's root ([www] buildbot_ui_at_root).
const gbbPrefix = "/gbb/"

// atRoot dispatches the requests of a site whose root is buildbot's UI
// ([www] buildbot_ui_at_root), before anything else sees them:
//
//   - /gbb/X is gbb's /X: its pages, forms, login and static files, and
//     the API and streams the pages reach by relative links (their links
//     are relative to the page, so they stay under /gbb/, as behind a
//     proxy that strips a prefix);
//   - the API, /ws, /sse/, /auth/, /change_hook/ and /avatar stay at the
//     root, where buildbot's UI and the forges call them;
//   - a GET of one of the UI's files (its index at /) is the UI's
//     (served as bbui.Prefix + path);
//   - a GET of another path where gbb has a page (a bookmark, a
//     reporter's link to a build, a badge in a README) is sent to it
//     under gbb/, and /buildbot-ui/ to the root;
//   - anything else is not found: no form of gbb answers outside /gbb/.
func (s *Server) atRoot(pages chi.Routes) func(http.Handler) http.Handler {
	notFound := func(w http.ResponseWriter, r *http.Request) {
		jsonreply.Error(w, http.StatusNotFound, "no such path "+r.URL.Path+" (gbb's pages are under "+gbbPrefix+")")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			path := r.URL.Path
			get := r.Method == http.MethodGet || r.Method == http.MethodHead
			switch {
			case path == strings.TrimSuffix(gbbPrefix, "/"):
				seeOtherTo(w, withQuery(strings.TrimPrefix(gbbPrefix, "/"), r))
			case strings.HasPrefix(path, gbbPrefix+strings.TrimPrefix(bbui.Prefix, "/")) || path+"/" == gbbPrefix+strings.TrimPrefix(bbui.Prefix, "/"):
				notFound(w, r) // the UI is at the root, and only there
			case strings.HasPrefix(path, gbbPrefix):
				next.ServeHTTP(w, withPath(r, strings.TrimPrefix(path, strings.TrimSuffix(gbbPrefix, "/"))))
			case rootPath(path):
				next.ServeHTTP(w, r)
			case get && s.bbui.Serves(strings.TrimPrefix(path, "/")):
				next.ServeHTTP(w, withPath(r, bbui.Prefix+strings.TrimPrefix(path, "/")))
			case get && (path == bbui.Prefix || path+"/" == bbui.Prefix):
				seeOtherTo(w, withQuery(ui.RootOf(path), r))
			case get && !strings.HasPrefix(path, bbui.Prefix) && pages.Match(chi.NewRouteContext(), http.MethodGet, path):
				seeOtherTo(w, withQuery(ui.RootOf(path)+strings.TrimPrefix(gbbPrefix, "/")+strings.TrimPrefix(r.URL.EscapedPath(), "/"), r))
			default:
				notFound(w, r)
			}
		})
	}
}

// rootPath reports whether path stays at the root when buildbot's UI is
// there: what the UI, programs and forges call.
func rootPath(path string) bool {
	return apiPath(path) || path == "/avatar" || strings.HasPrefix(path, "/auth/") || strings.HasPrefix(path, "/change_hook/")
}

// withPath is r for path, its escaped form cut as path was.
func withPath(r *http.Request, path string) *http.Request {
	r2 := r.Clone(r.Context())
	if raw := r.URL.RawPath; raw != "" {
		if cut := len(r.URL.Path) - len(path); cut >= 0 && strings.HasSuffix(r.URL.Path, path) && strings.HasPrefix(raw, r.URL.Path[:cut]) {
			r2.URL.RawPath = raw[cut:]
		} else {
			r2.URL.RawPath = ""
		}
	}
	r2.URL.Path = path
	return r2
}

// withQuery is target with r's query.
func withQuery(target string, r *http.Request) string {
	if r.URL.RawQuery != "" {
		return target + "?" + r.URL.RawQuery
	}
	return target
}

// bbuiRoutes adds /avatar, /auth/login, /auth/logout and, with a UI,
// /buildbot-ui/.
func (s *Server) bbuiRoutes(r interface {
	Get(string, http.HandlerFunc)
	Method(string, string, http.Handler)
}) {
	r.Method(http.MethodGet, "/avatar", s.avatar)
	r.Get("/auth/login", s.authLogin)
	r.Get("/auth/logout", s.authLogout)
	if s.bbui != nil {
		r.Get("/buildbot-ui", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "buildbot-ui/")
			w.WriteHeader(http.StatusMovedPermanently)
		})
		r.Method(http.MethodGet, bbui.Prefix+"*", s.bbui)
	}
}

// newBuildbotUI makes the server of buildbot's UI that cfg names, or nil.
func (s *Server) newBuildbotUI() *bbui.Server {
	if s.cfg.BuildbotUI.Dir == "" {
		return nil
	}
	ui, err := bbui.New(bbui.Config{
		Dir: s.cfg.BuildbotUI.Dir, AtRoot: s.cfg.BuildbotUI.AtRoot, Title: s.cfg.Title, TitleURL: s.cfg.TitleURL,
		BuildbotURL:   func() string { return s.site().buildbotURL },
		AvatarMethods: s.avatar.Methods,
		Versions:      [][2]string{{"gbb", s.cfg.Version}},
		User:          s.bbuiUser,
		MasterFiles:   s.cfg.MasterFiles,
		Logger:        s.log,
		AuthName:      s.authName,
	})
	if err != nil {
		s.log.Error("buildbot's UI is not served", "err", err)
		return nil
	}
	path := bbui.Prefix
	if s.cfg.BuildbotUI.AtRoot {
		path = "/ (gbb's pages under " + gbbPrefix + ")"
	}
	s.log.Info("serving buildbot's UI", "path", path, "dir", s.cfg.BuildbotUI.Dir, "plugins", ui.Plugins())
	return ui
}

// authName is buildbot's name of the login in force, for the UI.
func (s *Server) authName() string {
	if s.acc().auth == nil {
		return "NoAuth"
	}
	return "UserPasswordAuth"
}

// bbuiUser is who asks, as buildbot's user_info, and whether they may see
// anything.
func (s *Server) bbuiUser(r *http.Request) (map[string]any, bool) {
	u := auth.UserOf(r)
	if u == nil {
		return map[string]any{"anonymous": true}, !s.acc().authz.NoAnonymousView
	}
	groups := []any{}
	for _, g := range u.Groups {
		groups = append(groups, g)
	}
	return map[string]any{"anonymous": false, "username": u.Name, "full_name": u.Name, "groups": groups}, true
}

// uiTarget is where auth/login and auth/logout send the browser back to:
// the UI's page that redirect names (a fragment of the UI's URL, as
// buildbot's _redirect), relative to auth/, so right behind a proxy too.
func uiTarget(redirect string) string {
	redirect = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, redirect)
	return "../#" + redirect
}

func seeOtherTo(w http.ResponseWriter, loc string) {
	w.Header().Set("Location", loc)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// authLogin serves GET auth/login as buildbot's for user and password
// logins: the browser is asked for basic auth, and a user it sends gets a
// session; then back to the UI. Without [www.auth] there is nothing to log
// in to.
func (s *Server) authLogin(w http.ResponseWriter, r *http.Request) {
	// Another site's page could otherwise log its visitor in as its
	// author (credentials in the URL): a login CSRF.
	if reason := s.crossSiteGet(r); reason != "" {
		s.log.Info("refused a cross-site login", "remote", s.clientAddr(r), "origin", r.Header.Get("Origin"), "reason", reason)
		jsonreply.Error(w, http.StatusForbidden, reason)
		return
	}
	a := s.acc().auth
	target := uiTarget(r.URL.Query().Get("redirect"))
	if a == nil {
		seeOtherTo(w, target)
		return
	}
	u := auth.UserOf(r)
	if _, _, basic := r.BasicAuth(); u == nil || !basic {
		// authenticate answered a wrong password; this is the first ask.
		w.Header().Set("WWW-Authenticate", `Basic realm="gbb"`)
		jsonreply.Error(w, http.StatusUnauthorized, "log in with your user name and password")
		return
	}
	sess := a.NewSession(u)
	http.SetCookie(w, s.sessionCookie(r, sess.ID, sess.Expires()))
	s.log.Info("login", "user", u.Name, "remote", s.clientAddr(r), "by", "buildbot UI")
	seeOtherTo(w, target)
}

// crossSiteGet returns why r, a GET of auth/login or auth/logout, comes
// from another site's page, or "" when it does not: the browser says so
// (auth.CrossSite), or it sends an Origin that is not the site's.
func (s *Server) crossSiteGet(r *http.Request) string {
	if reason := auth.CrossSite(r); reason != "" {
		return reason
	}
	if o := r.Header.Get("Origin"); o != "" && !auth.OriginOK(r, o, s.site().origin) {
		return "cross-site request refused (Origin " + o + " is not the site's): use the site's own pages"
	}
	return ""
}

// authLogout serves GET auth/logout as buildbot's: it ends the session and
// goes back to the UI. Another site's page cannot log its visitor out.
func (s *Server) authLogout(w http.ResponseWriter, r *http.Request) {
	if reason := s.crossSiteGet(r); reason != "" {
		jsonreply.Error(w, http.StatusForbidden, reason)
		return
	}
	if a := s.acc().auth; a != nil {
		if c, err := r.Cookie(auth.SessionCookie); err == nil {
			a.EndSession(c.Value)
		}
		http.SetCookie(w, s.sessionCookie(r, "", time.Time{}))
	}
	seeOtherTo(w, uiTarget(r.URL.Query().Get("redirect")))
}
