package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/auth"
)

// Who may do what, as buildbot's authz. Every POST goes through one guard,
// the server's sameOrigin (web/server.go), which calls Authorize here: it finds the route's
// entry in postRoutes (a POST route missing from it is refused), decodes
// the body ONCE (a JSON-RPC call, strictly: one JSON object and nothing
// after it; or a form, a force form into the same ForceRequest as a
// JSON-RPC force), checks the CSRF defence of its kind (web/auth/csrf.go),
// resolves what the call acts on, and asks the [[www.authz.rules]]. A
// refusal goes back to the guard, which answers it. The decoded call then
// travels with the request (CallOf): the handlers hand it to Act and never
// read the body themselves, so what is authorized is what is done. A call
// whose action cannot be determined is refused.
//
// The first rule naming the action and the builder decides: the user may
// act when one of its roles is theirs (their groups, the [[www.authz.roles]]
// that name them or their groups, and "owner" on a build they forced). No
// rule naming the action allows every logged-in user and refuses anonymous
// ones. Without [www.auth] everything is allowed, as in buildbot.

// postKind is how a POST route is called, and so how it is defended
// against cross-site requests.
type postKind int

const (
	// postForm is a page's form: it must carry the CSRF token.
	postForm postKind = iota
	// postRPC is a JSON-RPC call: it must be sent as application/json
	// (and, with a session cookie, carry the CSRF token in a header).
	postRPC
	// postHook is a change hook: it checks its own secrets.
	postHook
)

// postRoute is what a POST route does.
type postRoute struct {
	kind postKind
	// methods maps a JSON-RPC method to its action (postRPC).
	methods map[string]string
	// also maps a JSON-RPC method to a second action that the rules must
	// allow too (see workerStopAlso).
	also map[string]string
	// action is a form's action; "" for a form that is no control (login,
	// logout). actionParam, when set, names the path parameter that holds
	// the action instead, one of actions.
	action      string
	actionParam string
	actions     []string
	// target is what the control acts on: build, request, worker or force.
	target targetKind
	// what names the target in a JSON-RPC error ("build", "worker" ...).
	what string
}

type targetKind int

const (
	targetNone targetKind = iota
	targetForce
	targetBuild
	targetRequest
	targetWorker
	targetScheduler
)

// postRoutes lists every POST route by its chi pattern. TestEveryPostRoute
// checks that the router has no other, and that each is guarded.
// (chi gives a route mounted at "/" of a subrouter without its trailing
// slash.)
var postRoutes = map[string]postRoute{
	"/login":                 {kind: postForm},
	"/logout":                {kind: postForm},
	"/change_hook/{dialect}": {kind: postHook},
	"/change_hook":           {kind: postHook}, // and "/change_hook/": the base dialect, as buildbot's

	"/api/v2/schedulers/{schedulerid}":            {kind: postRPC, methods: map[string]string{"enable": "enable"}, target: targetScheduler, what: "scheduler"},
	"/api/v2/forceschedulers/{scheduler}":         {kind: postRPC, methods: map[string]string{"force": "force"}, target: targetForce, what: "forcescheduler"},
	"/api/v2/builds/{buildid}":                    {kind: postRPC, methods: map[string]string{"stop": "stop", "rebuild": "rebuild"}, target: targetBuild, what: "build"},
	"/api/v2/builders/{builder}/builds/{number}":  {kind: postRPC, methods: map[string]string{"stop": "stop", "rebuild": "rebuild"}, target: targetBuild, what: "build"},
	"/api/v2/buildrequests/{brid}":                {kind: postRPC, methods: map[string]string{"cancel": "cancel"}, target: targetRequest, what: "buildrequest"},
	"/api/v2/workers/{worker}":                    {kind: postRPC, methods: map[string]string{"pause": "pause", "unpause": "unpause", "stop": "graceful", "graceful": "graceful", "kill": "kill"}, also: workerStopAlso, target: targetWorker, what: "worker"},
	"/force/{scheduler}":                          {kind: postForm, action: "force", target: targetForce},
	"/builders/{builder}/force/{scheduler}":       {kind: postForm, action: "force", target: targetForce},
	"/builders/{builder}/builds/{number}/stop":    {kind: postForm, action: "stop", target: targetBuild},
	"/builders/{builder}/builds/{number}/rebuild": {kind: postForm, action: "rebuild", target: targetBuild},
	"/buildrequests/{brid}/cancel":                {kind: postForm, action: "cancel", target: targetRequest},
	"/workers/{worker}/{action}":                  {kind: postForm, actionParam: "action", actions: []string{"pause", "unpause", "graceful"}, target: targetWorker},
}

// PostRoutes lists the POST route patterns the control path knows, each
// with its JSON-RPC methods, sorted (none for a form or a change hook), so
// that the server can check that it routes exactly these, all guarded.
func PostRoutes() map[string][]string {
	out := make(map[string][]string, len(postRoutes))
	for pattern, route := range postRoutes {
		out[pattern] = slices.Sorted(maps.Keys(route.methods))
	}
	return out
}

// workerStopAlso: a worker's JSON-RPC "stop" (buildbot's name for a
// graceful shutdown) is the action "graceful", and must ALSO be allowed by
// the rules for "stop", so that rules naming "stop" but not "graceful" do
// not leave it open to every logged-in user.
//
// Buildbot 3.7 differs: its endpoint matchers (www/authz/endpointmatchers.py)
// have none for workers. StopBuildEndpointMatcher matches stop on builds and
// build requests only, so /workers/N stop, kill, pause and unpause are
// matched by AnyControlEndpointMatcher or AnyEndpointMatcher alone, and an
// unmatched control is allowed to anyone. gbb names the worker actions
// (pause, unpause, graceful, kill), lets a rule name "stop" for a worker's
// stop too, and allows a control no rule names to logged-in users only;
// checkconfig warns about control actions that rules leave unnamed.
var workerStopAlso = map[string]string{"stop": "stop"}

// Call is a POST decoded and authorized once, as the handlers get it.
type Call struct {
	route  postRoute
	path   string     // the request's path, for the log
	Action string     // one of config.AuthzActions, or "" for a form that is no control
	also   string     // a second action the rules must allow too, or ""
	User   *auth.User // who asks; nil for anonymous (and everyone without [www.auth])

	rpc  *RPCRequest // the JSON-RPC call; nil for a form
	Form url.Values  // the form's fields; nil for a JSON-RPC call

	// What the control acts on, by route.target.
	Force     *scheduler.ForceRequest // owner set to the user when one is logged in
	Scheduler string                  // the force scheduler of Force
	Builder   store.Builder           // the builder of a builder page's force form, else zero
	Build     store.Build
	Request   store.BuildRequest
	Worker    store.Worker
	// Sched is the scheduler of an enable call.
	Sched SchedulerInfo

	Builders []string // the builders acted on; none for a worker action
	Owner    string   // who forced the build or request acted on, or ""
}

type callKey struct{}

// CallOf returns the call that Authorize decoded for r. A handler that
// finds none was reached without the guard: it answers 500 and acts on
// nothing.
func (s *Server) CallOf(w http.ResponseWriter, r *http.Request) (*Call, bool) {
	c, ok := r.Context().Value(callKey{}).(*Call)
	if !ok {
		s.log.Error("control handler reached without authorize", "path", r.URL.Path)
		jsonreply.Error(w, http.StatusInternalServerError, "internal error: control not authorized")
		return nil, false
	}
	return c, true
}

// Refusal is why Authorize refused a POST, for the caller to answer: a
// page's form with the error page, anything else with Write.
type Refusal struct {
	Status  int
	Message string
	// Form is whether the POST was a page's form (a control, login or
	// logout), whose browser is shown the error page.
	Form bool

	rpc  bool            // a JSON-RPC call, answered as one
	code int             // its JSON-RPC error code
	id   json.RawMessage // its id, once known
}

// Write answers a refusal that is no form: a JSON-RPC error for a
// JSON-RPC call, else a JSON error.
func (f *Refusal) Write(w http.ResponseWriter) {
	if !f.rpc {
		jsonreply.Error(w, f.Status, f.Message)
		return
	}
	writeRPCError(w, f.id, RPCError{status: f.Status, code: f.code, message: f.Message})
}

// Authorize decodes a POST, checks its CSRF defence and whether its user
// may do it. It returns r with the decoded call attached, or why it
// refused the request, which it has not answered (w serves only to bound
// the body's read).
func (s *Server) Authorize(w http.ResponseWriter, r *http.Request) (*http.Request, *Refusal) {
	pattern := chi.RouteContext(r.Context()).RoutePattern()
	route, known := postRoutes[pattern]
	if !known {
		s.log.Error("refused a POST to a route with no control entry", "pattern", pattern, "path", r.URL.Path)
		return r, &Refusal{Status: http.StatusForbidden, Message: "no control is known for " + r.URL.Path}
	}
	c := &Call{route: route, path: r.URL.Path, User: auth.UserOf(r)}
	var ref *Refusal
	switch route.kind {
	case postHook:
		return r, nil
	case postRPC:
		ref = s.decodeCall(w, r, c)
	case postForm:
		ref = s.decodeForm(w, r, c)
	}
	if ref != nil {
		return r, ref
	}
	if ref := s.resolve(r, c); ref != nil {
		return r, ref
	}
	if c.Action != "" && s.cfg.Access().Users != nil {
		for _, action := range []string{c.Action, c.also} {
			if action == "" {
				continue
			}
			if builder, denied := s.denied(c, action); denied {
				msg := auth.Refusal(c.User, action, builder)
				if c.User != nil {
					// (An anonymous one is not logged: anyone could flood
					// the log with them.)
					s.log.Info("refused a control", "user", c.User.Name, "action", action, "path", r.URL.Path, "reason", msg)
				}
				return r, c.refuse(RPCError{status: http.StatusForbidden, message: msg})
			}
		}
		if c.User != nil {
			s.log.Info("authorized", "user", c.User.Name, "action", c.Action, "builders", c.Builders)
		}
	}
	return r.WithContext(context.WithValue(r.Context(), callKey{}, c)), nil
}

// denied reports whether c's user may not do action on one of c's
// builders (or, with none, on no builder: a worker action, or a force of
// nothing), and which builder.
func (s *Server) denied(c *Call, action string) (builder string, denied bool) {
	if len(c.Builders) == 0 {
		return "", !auth.Allowed(s.cfg.Access().Rules, c.User, action, "", c.Owner)
	}
	for _, b := range c.Builders {
		if !auth.Allowed(s.cfg.Access().Rules, c.User, action, b, c.Owner) {
			return b, true
		}
	}
	return "", false
}

// decodeCall reads a JSON-RPC call into c: the only read of its body.
func (s *Server) decodeCall(w http.ResponseWriter, r *http.Request, c *Call) *Refusal {
	req, rerr := decodeRPC(w, r)
	c.rpc = &req // for its id, even when refused
	if rerr != nil {
		return c.refuse(*rerr)
	}
	// A session cookie is a browser's: its call must carry the session's
	// token, as its forms do, or come from the site's own pages (buildbot's
	// UI sends no token).
	if c.User != nil && c.User.Session != nil && !auth.CheckCSRF(r.Header.Get(auth.CSRFHeader), c.User.Session) && !auth.SameOriginCall(r) {
		return c.refuse(RPCError{status: http.StatusForbidden, message: "missing or stale CSRF token: send the session's token in the " + auth.CSRFHeader + " header"})
	}
	action, ok := c.route.methods[req.Method]
	if !ok {
		return c.refuse(*noMethod(req.Method, c.route.what))
	}
	c.Action = action
	c.also = c.route.also[req.Method]
	if c.route.target == targetForce {
		fr, err := forceRequestFromRPC(req.Params)
		if err != nil {
			return c.refuse(RPCError{status: http.StatusBadRequest, code: RPCInvalidParams, message: err.Error()})
		}
		c.Force, c.Scheduler = &fr, chi.URLParam(r, "scheduler")
	}
	return nil
}

// decodeForm reads a form into c: the only read of its body. Every form
// carries the CSRF token (auth.CheckFormToken).
func (s *Server) decodeForm(w http.ResponseWriter, r *http.Request, c *Call) *Refusal {
	r.Body = http.MaxBytesReader(w, r.Body, MaxRPCBody)
	if err := r.ParseForm(); err != nil {
		status, msg := formError(err)
		return c.refuse(RPCError{status: status, message: msg})
	}
	c.Form = r.PostForm
	if reason := auth.CheckFormToken(r, c.User); reason != "" {
		s.log.Info("refused a form without a valid CSRF token", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", reason)
		return c.refuse(RPCError{status: http.StatusForbidden, message: reason})
	}
	switch {
	case c.route.actionParam != "":
		c.Action = chi.URLParam(r, c.route.actionParam)
		if !slices.Contains(c.route.actions, c.Action) {
			return c.refuse(RPCError{status: http.StatusNotFound, message: fmt.Sprintf("no action %q here", c.Action)})
		}
	default:
		c.Action = c.route.action
	}
	if c.route.target == targetForce {
		if c.User != nil {
			// The owner of a forced build is who forced it, whatever the
			// form says (and the page shown again says so too); without a
			// login, the form's user name is taken, as in buildbot.
			c.Form.Set("username", c.User.Name)
		}
		c.Scheduler = chi.URLParam(r, "scheduler")
		fr, err := forceRequestFromForm(c.Form, s.forceParams(c.Scheduler))
		if err != nil {
			return c.refuse(RPCError{status: http.StatusBadRequest, message: err.Error()})
		}
		codebasesFromForm(&fr, c.Form, s.forceCodebases(c.Scheduler))
		c.Force = &fr
	}
	return nil
}

// forceRequestFromForm reads a force form: buildbot's fields, and the
// scheduler's params (the ones the form sends) as build properties.
func forceRequestFromForm(form url.Values, params []scheduler.ForceParam) (scheduler.ForceRequest, error) {
	fr := scheduler.ForceRequest{
		Owner:      form.Get("username"),
		Reason:     form.Get("reason"),
		Branch:     form.Get("branch"),
		Revision:   form.Get("revision"),
		Repository: form.Get("repository"),
		Project:    form.Get("project"),
	}
	if v := form.Get("builderid"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fr, errors.New("builderid must be an integer")
		}
		fr.BuilderID = id
	}
	for _, p := range params {
		if v, ok := form[p.Name]; ok && p.Type != "username" {
			if fr.Properties == nil {
				fr.Properties = map[string]any{}
			}
			fr.Properties[p.Name] = v[0]
			if p.Type == "multiple_choice" {
				fr.Properties[p.Name] = v // every option selected
			}
		}
	}
	return fr, nil
}

// forceParams returns the params of the force scheduler called name; none
// when there is no such scheduler.
func (s *Server) forceParams(name string) []scheduler.ForceParam {
	for _, fi := range s.ForceSchedulers() {
		if fi.Name == name {
			return fi.Params
		}
	}
	return nil
}

// resolve finds what c acts on, and its builders and owner; it refuses
// 404 a builder, build, request or worker that does not exist.
func (s *Server) resolve(r *http.Request, c *Call) *Refusal {
	var err error
	switch c.route.target {
	case targetForce:
		if chi.URLParam(r, "builder") != "" {
			// A builder page's form forces that builder, whatever its
			// builderid says.
			if c.Builder, err = s.BuilderParam(r); err == nil {
				c.Force.BuilderID = c.Builder.ID
			}
		}
		if c.User != nil {
			c.Force.Owner, c.Force.OwnerFromLogin = c.User.Name, true
		}
		c.Builders = s.forceBuilders(c.Scheduler, c.Force.BuilderID, c.Force.BuilderNames)
	case targetBuild:
		if c.Build, err = s.BuildParam(r); err == nil {
			c.Builders, c.Owner = s.builderName(c.Build.BuilderID), PropString(c.Build.Properties, "owner")
		}
	case targetRequest:
		if c.Request, err = s.buildRequestParam(r); err == nil {
			c.Builders = s.builderName(c.Request.BuilderID)
			if bs, err := s.cfg.Store.Buildset(c.Request.BuildsetID); err == nil {
				c.Owner = PropString(bs.Properties, "owner")
			}
		}
	case targetWorker:
		c.Worker, err = s.workerParam(r)
	case targetScheduler:
		c.Sched, err = s.schedulerParam(r)
	}
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			return c.refuse(RPCError{status: ae.status, message: ae.msg})
		}
		s.log.Error("control lookup", "path", r.URL.Path, "err", err)
		return c.refuse(RPCError{status: http.StatusInternalServerError, code: RPCInternalError, message: "internal error"})
	}
	return nil
}

// refuse is the refusal of c with e: a JSON-RPC error (code
// RPCInvalidRequest unless e has one, with the call's id once known), or
// a form's.
func (c *Call) refuse(e RPCError) *Refusal {
	if c.route.kind != postRPC {
		return &Refusal{Status: e.status, Message: e.message, Form: true}
	}
	if e.code == 0 {
		e.code = RPCInvalidRequest
	}
	var id json.RawMessage
	if c.rpc != nil {
		id = c.rpc.ID
	}
	return &Refusal{Status: e.status, Message: e.message, rpc: true, code: e.code, id: id}
}

// forceBuilders returns the builders a force of scheduler would build: the
// one builderID or names name, else all of the scheduler's.
func (s *Server) forceBuilders(scheduler string, builderID int64, names []string) []string {
	if builderID != 0 {
		if b, err := s.cfg.Store.Builder(builderID); err == nil {
			return []string{b.Name}
		}
	}
	if len(names) > 0 {
		return names
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

func (s *Server) builderName(id int64) []string {
	b, err := s.cfg.Store.Builder(id)
	if err != nil {
		return nil
	}
	return []string{b.Name}
}

// PropString is the string value of the property name, or "".
func PropString(props store.Properties, name string) string {
	var v string
	if p, ok := props[name]; ok {
		json.Unmarshal(p.Value, &v)
	}
	return v
}
