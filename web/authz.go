package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Who may do what, as buildbot's authz: every control POST (the JSON-RPC
// calls under /api/v2 and the pages' forms) goes through authorize, which
// names the action and its builder from the route, then asks the
// [[www.authz.rules]]. The first rule naming the action and the builder
// decides: the user may act when one of its roles is theirs (their groups,
// the [[www.authz.roles]] that name them or their groups, and "owner" on a
// build they forced). No rule naming the action allows every logged-in
// user and refuses anonymous ones. Without [www.auth] everything is
// allowed, as in buildbot.

// control is one action to authorize.
type control struct {
	action   string   // one of config.AuthzActions, or "" when the route is not a control
	builders []string // the builders it acts on; none for a worker action
	owner    string   // who forced the build or request acted on, or ""
	rpc      bool     // a JSON-RPC call (answered in JSON) rather than a form
	rpcID    json.RawMessage
}

// authorize checks a control POST's CSRF token and whether its user may do
// it; it answers the request and returns false when not.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if s.acc().auth == nil {
		return true
	}
	pattern := chi.RouteContext(r.Context()).RoutePattern()
	if pattern == "/login" || strings.HasPrefix(pattern, "/change_hook/") {
		return true
	}
	u := userOf(r)
	c, ok := s.controlOf(w, r, pattern)
	if !ok {
		return false
	}
	if u != nil && u.session != nil {
		tok := r.Header.Get(csrfHeader)
		if tok == "" && !c.rpc {
			tok = r.PostForm.Get(csrfField)
		}
		if !checkCSRF(tok, u.session) {
			s.refuse(w, r, c, "missing or stale CSRF token: reload the page and try again")
			return false
		}
	}
	if c.action == "" {
		return true
	}
	for _, b := range c.builders {
		if !s.allowed(u, c.action, b, c.owner) {
			s.refuse(w, r, c, refusal(u, c.action, b))
			return false
		}
	}
	if len(c.builders) == 0 && !s.allowed(u, c.action, "", c.owner) {
		s.refuse(w, r, c, refusal(u, c.action, ""))
		return false
	}
	if u != nil {
		s.log.Info("authorized", "user", u.Name, "action", c.action, "builders", c.builders)
	}
	return true
}

func refusal(u *user, action, builder string) string {
	who := "anonymous users"
	if u != nil {
		who = u.Name
	}
	msg := who + " may not " + action
	if builder != "" {
		msg += " on builder " + builder
	}
	if u == nil {
		msg += ": log in first"
	}
	return msg
}

// refuse answers a refused control 403: a JSON-RPC error or the error page.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, c control, msg string) {
	if c.rpc {
		writeRPCError(w, c.rpcID, rpcError{status: http.StatusForbidden, code: rpcInvalidRequest, message: msg})
		return
	}
	s.errorPage(w, r, http.StatusForbidden, msg)
}

// allowed applies the rules to user u doing action on builder ("" for a
// worker action) of a build owned by owner.
func (s *Server) allowed(u *user, action, builder, owner string) bool {
	for _, rule := range s.acc().authz.Rules {
		if !slices.Contains(rule.Actions, action) && !slices.Contains(rule.Actions, "*") {
			continue
		}
		if len(rule.Builders) > 0 && !matchAny(rule.Builders, builder) {
			continue
		}
		if u == nil {
			return false
		}
		roles := s.rolesOf(u)
		for _, role := range rule.Roles {
			if role == config.RoleOwner && owner != "" && owner == u.Name || slices.Contains(roles, role) {
				return true
			}
		}
		return false
	}
	return u != nil
}

func matchAny(patterns []string, name string) bool {
	if name == "" {
		return false
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// rolesOf returns u's roles: its groups and the roles given to its name or
// groups.
func (s *Server) rolesOf(u *user) []string {
	roles := slices.Clone(u.Groups)
	for _, rm := range s.acc().authz.Roles {
		if slices.Contains(rm.Users, u.Name) || slices.ContainsFunc(rm.Groups, func(g string) bool { return slices.Contains(u.Groups, g) }) {
			roles = append(roles, rm.Role)
		}
	}
	return roles
}

// controlOf names the action of a control POST from its route pattern. It
// answers the request and returns false when the request cannot be read. A
// build, request or worker that does not exist gives no builder: the
// handler answers 404 for it.
func (s *Server) controlOf(w http.ResponseWriter, r *http.Request, pattern string) (control, bool) {
	var c control
	if rest, ok := strings.CutPrefix(pattern, "/api/v2"); ok {
		c.rpc = true
		req, ok := s.peekRPC(w, r)
		if !ok {
			return c, false
		}
		c.rpcID = req.ID
		switch {
		case strings.HasPrefix(rest, "/forceschedulers/"):
			c.action = "force"
			c.builders = s.forceBuilders(chi.URLParam(r, "scheduler"), rpcBuilderID(req.Params), req.Params["builderNames"])
			if u := userOf(r); u != nil {
				setRPCOwner(r, req, u.Name)
			}
		case strings.HasPrefix(rest, "/workers/"):
			c.action = req.Method
			if c.action == "stop" {
				c.action = "graceful"
			}
		case strings.HasPrefix(rest, "/buildrequests/"):
			c.action = req.Method
			c.builders, c.owner = s.requestBuilder(r)
		case strings.Contains(rest, "/builds/"):
			c.action = req.Method
			c.builders, c.owner = s.buildBuilder(r)
		}
		if !slices.Contains(config.AuthzActions, c.action) {
			c.action = "" // the handler refuses an unknown method
		}
		return c, true
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRPCBody)
	if err := r.ParseForm(); err != nil {
		status, msg := formError(err)
		s.errorPage(w, r, status, msg)
		return c, false
	}
	switch {
	case strings.HasSuffix(pattern, "/force/{scheduler}"):
		c.action = "force"
		var id int64
		if chi.URLParam(r, "builder") != "" {
			if b, err := s.builderParam(r); err == nil {
				id = b.ID
			}
		} else {
			id, _ = strconv.ParseInt(r.PostForm.Get("builderid"), 10, 64)
		}
		c.builders = s.forceBuilders(chi.URLParam(r, "scheduler"), id, nil)
		if u := userOf(r); u != nil {
			r.PostForm.Set("username", u.Name)
		}
	case strings.HasSuffix(pattern, "/stop"), strings.HasSuffix(pattern, "/rebuild"):
		c.action = pattern[strings.LastIndexByte(pattern, '/')+1:]
		c.builders, c.owner = s.buildBuilder(r)
	case strings.HasSuffix(pattern, "/cancel"):
		c.action = "cancel"
		c.builders, c.owner = s.requestBuilder(r)
	case strings.HasPrefix(pattern, "/workers/"):
		c.action = chi.URLParam(r, "action")
	}
	if !slices.Contains(config.AuthzActions, c.action) {
		c.action = ""
	}
	return c, true
}

// peekRPC reads a JSON-RPC call's method, params and id, leaving the body
// for the handler. A body it cannot read is left for the handler to
// refuse.
func (s *Server) peekRPC(w http.ResponseWriter, r *http.Request) (rpcRequest, bool) {
	var req rpcRequest
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRPCBody))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeRPCError(w, nil, rpcError{status: http.StatusRequestEntityTooLarge, code: rpcInvalidRequest, message: fmt.Sprintf("request body larger than %d bytes", maxRPCBody)})
		return req, false
	}
	if err != nil {
		writeRPCError(w, nil, rpcError{status: http.StatusBadRequest, code: rpcInvalidRequest, message: "cannot read the request: " + err.Error()})
		return req, false
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	json.Unmarshal(data, &req)
	return req, true
}

// setRPCOwner makes a force call's owner the user who makes it, as buildbot
// does with the logged-in user's name.
func setRPCOwner(r *http.Request, req rpcRequest, name string) {
	if req.Params == nil {
		return
	}
	var top map[string]json.RawMessage
	data, _ := io.ReadAll(r.Body)
	if json.Unmarshal(data, &top) != nil {
		r.Body = io.NopCloser(bytes.NewReader(data))
		return
	}
	owner, _ := json.Marshal(name)
	delete(req.Params, "username")
	req.Params["owner"] = owner
	top["params"], _ = json.Marshal(req.Params)
	out, _ := json.Marshal(top)
	r.Body = io.NopCloser(bytes.NewReader(out))
	r.ContentLength = int64(len(out))
}

// rpcBuilderID reads a force call's builderid, or 0.
func rpcBuilderID(params map[string]json.RawMessage) int64 {
	var v any
	if json.Unmarshal(params["builderid"], &v) != nil {
		return 0
	}
	id, _ := intParam(v)
	return id
}

// forceBuilders returns the builders a force of scheduler would build: the
// one builderID or names name, else all of the scheduler's.
func (s *Server) forceBuilders(scheduler string, builderID int64, names json.RawMessage) []string {
	if builderID != 0 {
		if b, err := s.cfg.Store.Builder(builderID); err == nil {
			return []string{b.Name}
		}
	}
	var list []string
	if json.Unmarshal(names, &list) == nil && len(list) > 0 {
		return list
	}
	if s.cfg.Forcer == nil {
		return nil
	}
	for _, fi := range s.cfg.Forcer.ForceSchedulers() {
		if fi.Name == scheduler {
			return fi.BuilderNames
		}
	}
	return nil
}

// buildBuilder returns the builder and the owner of the build a route
// names.
func (s *Server) buildBuilder(r *http.Request) ([]string, string) {
	b, err := s.buildParam(r)
	if err != nil {
		return nil, ""
	}
	return s.builderName(b.BuilderID), propString(b.Properties, "owner")
}

// requestBuilder returns the builder and the owner of the build request a
// route names.
func (s *Server) requestBuilder(r *http.Request) ([]string, string) {
	br, err := s.buildRequestParam(r)
	if err != nil {
		return nil, ""
	}
	var owner string
	if bs, err := s.cfg.Store.Buildset(br.BuildsetID); err == nil {
		owner = propString(bs.Properties, "owner")
	}
	return s.builderName(br.BuilderID), owner
}

func (s *Server) builderName(id int64) []string {
	b, err := s.cfg.Store.Builder(id)
	if err != nil {
		return nil
	}
	return []string{b.Name}
}

func propString(props store.Properties, name string) string {
	var v string
	if p, ok := props[name]; ok {
		json.Unmarshal(p.Value, &v)
	}
	return v
}
