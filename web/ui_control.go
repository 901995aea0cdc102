package web

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/store"
)

// The pages' buttons are forms that POST here, so they work without
// JavaScript; each calls the Controller as the JSON-RPC does, then sends the
// browser back to a page.

// nextRE is what a form's "next" field may name: a path from the site's
// root, so a form cannot send the browser to another site.
var nextRE = regexp.MustCompile(`^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*$|^$`)

// controlForm returns the form that authorize decoded and checked, and
// checks that control is available; it writes the error page and returns
// false otherwise.
func (s *Server) controlForm(w http.ResponseWriter, r *http.Request) (*call, bool) {
	c, ok := s.callOf(w, r)
	if !ok {
		return nil, false
	}
	if s.cfg.Controller == nil {
		s.errorPage(w, r, http.StatusServiceUnavailable, "control is not available")
		return nil, false
	}
	return c, true
}

// formError is the status and message for a form that cannot be read: 413
// when its body is larger than maxRPCBody, 400 otherwise.
func formError(err error) (int, string) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("bad form: request body larger than %d bytes", maxRPCBody)
	}
	return http.StatusBadRequest, "bad form: " + err.Error()
}

// controlDone answers a control form: the error page when err is set, else
// a redirect to the form's "next" page, or to def.
func (s *Server) controlDone(w http.ResponseWriter, r *http.Request, c *call, err error, def string) {
	if err != nil {
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			s.errorPage(w, r, ae.status, ae.msg)
		case errors.Is(err, store.ErrNotFound):
			s.errorPage(w, r, http.StatusNotFound, err.Error())
		case errors.Is(err, build.ErrNotHere):
			s.errorPage(w, r, http.StatusConflict, err.Error())
		default:
			s.pageError(w, r, err)
		}
		return
	}
	next := c.form.Get("next")
	if next == "" || !nextRE.MatchString(next) || strings.Contains(next, "..") {
		next = def
	}
	s.seeOther(w, r, next)
}

func buildPath(b store.Build) string {
	return "builders/" + strconv.FormatInt(b.BuilderID, 10) + "/builds/" + strconv.FormatInt(b.Number, 10)
}

func (s *Server) stopForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	err := s.cfg.Controller.StopBuild(r.Context(), c.build.ID, c.form.Get("reason"))
	s.controlDone(w, r, c, err, buildPath(c.build))
}

func (s *Server) rebuildForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	_, _, err := s.cfg.Controller.Rebuild(r.Context(), c.build.ID)
	s.controlDone(w, r, c, err, "builders/"+strconv.FormatInt(c.build.BuilderID, 10))
}

func (s *Server) cancelForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	err := s.cfg.Controller.CancelBuildRequest(r.Context(), c.request.ID, c.form.Get("reason"))
	s.controlDone(w, r, c, err, "pending")
}

// workerForm serves the workers page's pause, unpause and graceful (stop)
// buttons.
func (s *Server) workerForm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controlForm(w, r)
	if !ok {
		return
	}
	ctl, ctx, reason, wk := s.cfg.Controller, r.Context(), c.form.Get("reason"), c.worker
	var err error
	switch c.action {
	case "pause":
		err = ctl.PauseWorker(ctx, wk.ID, reason)
	case "unpause":
		err = ctl.UnpauseWorker(ctx, wk.ID)
	case "graceful":
		err = ctl.GracefulWorker(ctx, wk.ID)
	default:
		err = notFound("no worker action %q", c.action)
	}
	if err == nil {
		s.log.Info("worker control", "worker", wk.Name, "action", c.action, "reason", reason)
	}
	s.controlDone(w, r, c, err, "workers")
}
