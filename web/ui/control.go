package ui

import (
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// The pages' buttons are forms that POST here, so they work without
// JavaScript; each calls the Controller as the JSON-RPC does, then sends the
// browser back to a page.

// nextRE is what a form's "next" field may name: a path from the site's
// root, so a form cannot send the browser to another site.
var nextRE = regexp.MustCompile(`^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*$|^$`)

// controlForm returns the form that api.Authorize decoded and checked, and
// checks that control is available; it writes the error page and returns
// false otherwise.
func (s *Server) controlForm(w http.ResponseWriter, r *http.Request) (*api.Call, bool) {
	c, ok := s.api.CallOf(w, r)
	if !ok {
		return nil, false
	}
	if s.cfg.Controller == nil {
		s.ErrorPage(w, r, http.StatusServiceUnavailable, "control is not available")
		return nil, false
	}
	return c, true
}

// controlDone answers a control form: the error page when err is set, else
// a redirect to the form's "next" page, or to def.
func (s *Server) controlDone(w http.ResponseWriter, r *http.Request, c *api.Call, err error, def string) {
	if err != nil {
		var ae *api.Error
		switch {
		case errors.As(err, &ae):
			s.ErrorPage(w, r, ae.Status(), ae.Error())
		case errors.Is(err, store.ErrNotFound):
			s.ErrorPage(w, r, http.StatusNotFound, err.Error())
		case errors.Is(err, build.ErrNotHere):
			s.ErrorPage(w, r, http.StatusConflict, err.Error())
		default:
			s.pageError(w, r, err)
		}
		return
	}
	next := c.Form.Get("next")
	if next == "" || !nextRE.MatchString(next) || strings.Contains(next, "..") {
		next = def
	}
	s.SeeOther(w, r, next)
}

func buildPath(b store.Build) string {
	return "builders/" + strconv.FormatInt(b.BuilderID, 10) + "/builds/" + strconv.FormatInt(b.Number, 10)
}

func (s *Server) stopForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	err := s.cfg.Controller.StopBuild(r.Context(), c.Build.ID, c.Form.Get("reason"))
	s.controlDone(w, r, c, err, buildPath(c.Build))
}

func (s *Server) rebuildForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	_, _, err := s.cfg.Controller.Rebuild(r.Context(), c.Build.ID)
	s.controlDone(w, r, c, err, "builders/"+strconv.FormatInt(c.Build.BuilderID, 10))
}

func (s *Server) cancelForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	err := s.cfg.Controller.CancelBuildRequest(r.Context(), c.Request.ID, c.Form.Get("reason"))
	s.controlDone(w, r, c, err, "pending")
}

// workerForm serves the workers page's pause, unpause and graceful (stop)
// buttons.
func (s *Server) workerForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	ctl, ctx, reason, wk := s.cfg.Controller, r.Context(), c.Form.Get("reason"), c.Worker
	var err error
	switch c.Action {
	case "pause":
		err = ctl.PauseWorker(ctx, wk.ID, reason)
	case "unpause":
		err = ctl.UnpauseWorker(ctx, wk.ID)
	case "graceful":
		err = ctl.GracefulWorker(ctx, wk.ID)
	default:
		err = api.NotFound("no worker action %q", c.Action)
	}
	if err == nil {
		s.log.Info("worker control", "worker", wk.Name, "action", c.Action, "reason", reason)
	}
	s.controlDone(w, r, c, err, "workers")
}
