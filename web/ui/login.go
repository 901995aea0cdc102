package ui

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/gbb-ci/gbb/web/auth"
)

// authView is what a page's header shows about the login.
type authView struct {
	Open  bool   // no [www.auth]: everyone may do everything
	User  string // the logged-in user, or ""
	Login string // the login page's URL, relative to the page, coming back to it
}

func (s *Server) authView(r *http.Request) authView {
	if s.cfg.Access().Users == nil {
		return authView{Open: true}
	}
	v := authView{Login: rootOf(r.URL.Path) + "login"}
	if p := strings.TrimPrefix(r.URL.Path, "/"); p != "" && p != "login" && p != "logout" {
		v.Login += "?next=" + url.QueryEscape(p)
	}
	if u := auth.UserOf(r); u != nil {
		v.User = u.Name
	}
	return v
}

// loginTemplate is the login page, in the pages' layout.
var loginTemplate = template.Must(template.Must(pages.Clone()).New("login").Parse(`{{template "head" .}}
<h1>Log in</h1>
{{if .Error}}<p class="error" id="login-error">{{.Error}}</p>{{end}}
<form method="post" id="login-form" action="{{.Root}}login">
<input type="hidden" name="next" value="{{.Next}}">
<p><label>User name: <input name="username" autocomplete="username" value="{{.Username}}" required autofocus></label></p>
<p><label>Password: <input type="password" name="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Log in</button></p>
</form>
{{template "foot" .}}`))

// LoginPage is what the login page shows besides the header: where to go
// next, the user name given and why the last try failed.
type LoginPage struct {
	pageBase
	Next, Username, Error string
}

// LoginNext returns a form's or query's "next" page if it is a path from
// the site's root, else "".
func LoginNext(v string) string {
	if !nextRE.MatchString(v) || strings.Contains(v, "..") {
		return ""
	}
	return v
}

// LoginForm serves GET /login.
func (s *Server) LoginForm(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Access().Users == nil {
		s.ErrorPage(w, r, http.StatusNotFound, "no login is configured: everyone may do everything")
		return
	}
	s.RenderLogin(w, r, http.StatusOK, LoginPage{Next: LoginNext(r.URL.Query().Get("next"))})
}

// RenderLogin answers status with the login page p.
func (s *Server) RenderLogin(w http.ResponseWriter, r *http.Request, status int, p LoginPage) {
	p.pageBase = s.base(r, "", "Log in", "")
	var buf bytes.Buffer
	if err := loginTemplate.ExecuteTemplate(&buf, "login", p); err != nil {
		s.log.Error("render page", "page", "login", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// logoutTemplate is the page of GET /logout: a GET never ends a session
// (another site's page could make a browser load it), so it offers the
// form that posts, with the session's CSRF token.
var logoutTemplate = template.Must(template.Must(pages.Clone()).New("logout").Parse(`{{template "head" .}}
<h1>Log out</h1>
{{if .Auth.User}}<form method="post" id="logout-form" action="{{.Root}}logout">
<p>Logged in as {{.Auth.User}}. <button type="submit">Log out</button></p>
</form>{{else}}<p id="logged-out">You are not logged in. <a href="{{.Auth.Login}}">Log in</a></p>{{end}}
{{template "foot" .}}`))

// LogoutForm serves GET /logout: the form that logs out.
func (s *Server) LogoutForm(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Access().Users == nil {
		s.ErrorPage(w, r, http.StatusNotFound, "no login is configured: everyone may do everything")
		return
	}
	var buf bytes.Buffer
	if err := logoutTemplate.ExecuteTemplate(&buf, "logout", s.base(r, "", "Log out", "")); err != nil {
		s.log.Error("render page", "page", "logout", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
