package ui

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// The pages' buttons are forms that POST here, so they work without
// JavaScript; each acts through api.Act, as the JSON-RPC does, then sends
// the browser back to a page.

// nextRE is what a form's "next" field may name: a path from the site's
// root, so a form cannot send the browser to another site.
var nextRE = regexp.MustCompile(`^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*$|^$`)

// control answers a control form: it acts on the call that api.Authorize
// decoded and allowed (api.Act, as the JSON-RPC does), then shows the
// error page, or sends the browser to the form's "next" page, or to the
// page that def names.
func (s *Server) control(w http.ResponseWriter, r *http.Request, def func(*api.Call) string) {
	c, ok := s.api.CallOf(w, r)
	if !ok {
		return
	}
	if _, rerr := s.api.Act(r.Context(), c); rerr != nil {
		s.ErrorPage(w, r, rerr.Status(), rerr.Message())
		return
	}
	next := c.Form.Get("next")
	if next == "" || !nextRE.MatchString(next) || strings.Contains(next, "..") {
		next = def(c)
	}
	s.SeeOther(w, r, next)
}

func buildPath(b store.Build) string {
	return "builders/" + strconv.FormatInt(b.BuilderID, 10) + "/builds/" + strconv.FormatInt(b.Number, 10)
}

func (s *Server) stopForm(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(c *api.Call) string { return buildPath(c.Build) })
}

func (s *Server) rebuildForm(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(c *api.Call) string { return "builders/" + strconv.FormatInt(c.Build.BuilderID, 10) })
}

func (s *Server) cancelForm(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(*api.Call) string { return "pending" })
}

// workerForm serves the workers page's pause, unpause and graceful (stop)
// buttons.
func (s *Server) workerForm(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(*api.Call) string { return "workers" })
}
