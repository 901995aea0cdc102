package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Controller runs buildbot's control actions; *build.Engine satisfies it.
// Any master may be asked: one that does not run the build (or hold the
// worker's connection) has the master that does act, and succeeds, as
// buildbot's control messages. Each method returns an error wrapping
// store.ErrNotFound for an unknown id, store.ErrMasterInactive when the
// master concerned is not active (nothing would act), and build.ErrNotHere
// for a build of this master that is ending.
type Controller interface {
	// StopBuild interrupts a running build, which ends CANCELLED with
	// reason in its state; it does nothing to a finished build.
	StopBuild(ctx context.Context, buildID int64, reason string) error
	// Rebuild adds a buildset that builds a build again and returns its id
	// and its request ids by builder id.
	Rebuild(ctx context.Context, buildID int64) (bsid int64, brids map[int64]int64, err error)
	// CancelBuildRequest completes a pending request CANCELLED, or stops
	// the build of a claimed one; it does nothing to a complete request.
	CancelBuildRequest(ctx context.Context, brid int64, reason string) error
	PauseWorker(ctx context.Context, workerID int64, reason string) error
	UnpauseWorker(ctx context.Context, workerID int64) error
	// GracefulWorker is buildbot's "stop" on a worker: no new builds, and
	// a disconnection once its running builds are done.
	GracefulWorker(ctx context.Context, workerID int64) error
	// KillWorker disconnects a worker now; its builds end RETRY.
	KillWorker(ctx context.Context, workerID int64, reason string) error
}

// RPCServerError is the JSON-RPC code of an action that cannot be done now
// (the master running the build is not active).
const RPCServerError = -32000

// control serves every JSON-RPC control (force on /forceschedulers/NAME,
// stop and rebuild on builds, cancel on build requests, the worker
// actions): it acts on the call that Authorize decoded, and writes its
// result.
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	c, ok := s.CallOf(w, r)
	if !ok {
		return
	}
	res, rerr := s.Act(r.Context(), c)
	if rerr != nil {
		writeRPCError(w, c.rpc.ID, *rerr)
		return
	}
	writeRPCResult(w, c.rpc.ID, res)
}

// Act does what c, a call that Authorize decoded and allowed, asks: the
// one act of the JSON-RPC controls and of the pages' forms. It returns the
// JSON-RPC result ([bsid, brids] of a force or rebuild, else nil) or the
// error, with the HTTP status to answer.
func (s *Server) Act(ctx context.Context, c *Call) (any, *RPCError) {
	if c.route.target == targetForce {
		bsid, brids, rerr := s.force(ctx, c.Scheduler, *c.Force)
		if rerr != nil {
			return nil, rerr
		}
		return []any{bsid, brids}, nil
	}
	if c.route.target == targetScheduler {
		return nil, s.enableScheduler(c)
	}
	ctl := s.cfg.Controller
	if ctl == nil {
		msg := "control is not available"
		if c.rpc != nil {
			msg = c.route.what + " " + msg
		}
		return nil, &RPCError{status: http.StatusServiceUnavailable, code: RPCInternalError, message: msg}
	}
	switch c.route.target {
	case targetBuild:
		switch c.Action {
		case "stop":
			reason, rerr := c.reason()
			if rerr != nil {
				return nil, rerr
			}
			return nil, s.controlError(c, ctl.StopBuild(ctx, c.Build.ID, reason))
		case "rebuild":
			bsid, brids, err := ctl.Rebuild(ctx, c.Build.ID)
			if err != nil {
				return nil, s.controlError(c, err)
			}
			return []any{bsid, brids}, nil
		}
	case targetRequest:
		if c.Action == "cancel" {
			reason, rerr := c.reason()
			if rerr != nil {
				return nil, rerr
			}
			return nil, s.controlError(c, ctl.CancelBuildRequest(ctx, c.Request.ID, reason))
		}
	case targetWorker:
		reason, rerr := c.reason()
		if rerr != nil {
			return nil, rerr
		}
		wk := c.Worker
		var err error
		switch c.Action {
		case "pause":
			err = ctl.PauseWorker(ctx, wk.ID, reason)
		case "unpause":
			err = ctl.UnpauseWorker(ctx, wk.ID)
		case "graceful":
			err = ctl.GracefulWorker(ctx, wk.ID)
		case "kill":
			err = ctl.KillWorker(ctx, wk.ID, reason)
		default:
			return nil, noMethod(c.method(), c.route.what)
		}
		if err == nil {
			s.log.Info("worker control", "worker", wk.Name, "action", c.Action, "reason", reason)
		}
		return nil, s.controlError(c, err)
	}
	return nil, noMethod(c.method(), c.route.what)
}

// method is c's JSON-RPC method, or its action for a form.
func (c *Call) method() string {
	if c.rpc != nil {
		return c.rpc.Method
	}
	return c.Action
}

// reason is c's optional "reason": a JSON-RPC parameter, which must be a
// string, or a form's field.
func (c *Call) reason() (string, *RPCError) {
	if c.rpc == nil {
		return c.Form.Get("reason"), nil
	}
	return reasonParam(c.rpc.Params)
}

// controlError maps an error of a Controller to a JSON-RPC error; nil for
// nil.
func (s *Server) controlError(c *Call, err error) *RPCError {
	var ae *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return &RPCError{status: ae.status, code: RPCInvalidRequest, message: ae.msg}
	case errors.Is(err, store.ErrNotFound):
		return &RPCError{status: http.StatusNotFound, code: RPCInvalidRequest, message: err.Error()}
	case errors.Is(err, build.ErrNotHere), errors.Is(err, store.ErrMasterInactive):
		return &RPCError{status: http.StatusConflict, code: RPCServerError, message: err.Error()}
	}
	s.log.Error("control", "path", c.path, "err", err)
	return &RPCError{status: http.StatusInternalServerError, code: RPCInternalError, message: "internal error"}
}

func noMethod(method, what string) *RPCError {
	return &RPCError{status: http.StatusBadRequest, code: RPCMethodNotFound, message: fmt.Sprintf("no method %q on a %s", method, what)}
}

// reasonParam reads the optional "reason" parameter.
func reasonParam(params map[string]json.RawMessage) (string, *RPCError) {
	raw, ok := params["reason"]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var reason string
	if err := json.Unmarshal(raw, &reason); err != nil {
		return "", &RPCError{status: http.StatusBadRequest, code: RPCInvalidParams, message: "reason must be a string"}
	}
	return reason, nil
}

// workerParam finds the worker that the {worker} path parameter names by
// id or by name.
func (s *Server) workerParam(r *http.Request) (store.Worker, error) {
	v := chi.URLParam(r, "worker")
	var wk store.Worker
	var err error
	if id, perr := strconv.ParseInt(v, 10, 64); perr == nil {
		wk, err = s.cfg.Store.Worker(id)
	} else {
		wk, err = s.cfg.Store.WorkerByName(v)
	}
	if err != nil {
		return wk, LookupErr(err, "worker %s", v)
	}
	return wk, nil
}
