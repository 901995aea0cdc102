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
// Each method returns an error wrapping store.ErrNotFound for an unknown
// id, and build.ErrNotHere when another master runs the build or has
// claimed the request.
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
// (the build runs on another master).
const RPCServerError = -32000

// buildRPC serves "stop" and "rebuild" on /builds/ID and
// /builders/B/builds/N.
func (s *Server) buildRPC(w http.ResponseWriter, r *http.Request) {
	s.controlRPC(w, r, "build", func(c *Call) (any, *RPCError) {
		switch c.Action {
		case "stop":
			reason, rerr := reasonParam(c.rpc.Params)
			if rerr != nil {
				return nil, rerr
			}
			return nil, s.controlError(r, s.cfg.Controller.StopBuild(r.Context(), c.Build.ID, reason))
		case "rebuild":
			bsid, brids, err := s.cfg.Controller.Rebuild(r.Context(), c.Build.ID)
			if err != nil {
				return nil, s.controlError(r, err)
			}
			return []any{bsid, brids}, nil
		}
		return nil, noMethod(c.rpc.Method, "build")
	})
}

// buildRequestRPC serves "cancel" on /buildrequests/ID.
func (s *Server) buildRequestRPC(w http.ResponseWriter, r *http.Request) {
	s.controlRPC(w, r, "buildrequest", func(c *Call) (any, *RPCError) {
		if c.Action != "cancel" {
			return nil, noMethod(c.rpc.Method, "buildrequest")
		}
		reason, rerr := reasonParam(c.rpc.Params)
		if rerr != nil {
			return nil, rerr
		}
		return nil, s.controlError(r, s.cfg.Controller.CancelBuildRequest(r.Context(), c.Request.ID, reason))
	})
}

// workerRPC serves "pause", "unpause", "stop" (graceful shutdown; also
// called "graceful" here) and "kill" on /workers/ID or /workers/NAME.
func (s *Server) workerRPC(w http.ResponseWriter, r *http.Request) {
	s.controlRPC(w, r, "worker", func(c *Call) (any, *RPCError) {
		reason, rerr := reasonParam(c.rpc.Params)
		if rerr != nil {
			return nil, rerr
		}
		ctl, ctx, wk := s.cfg.Controller, r.Context(), c.Worker
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
			return nil, noMethod(c.rpc.Method, "worker")
		}
		if err == nil {
			s.log.Info("worker control", "worker", wk.Name, "action", c.Action, "reason", reason)
		}
		return nil, s.controlError(r, err)
	})
}

// controlRPC runs do on the call that Authorize decoded, and writes its
// result.
func (s *Server) controlRPC(w http.ResponseWriter, r *http.Request, what string, do func(*Call) (any, *RPCError)) {
	c, ok := s.CallOf(w, r)
	if !ok {
		return
	}
	if s.cfg.Controller == nil {
		writeRPCError(w, c.rpc.ID, RPCError{status: http.StatusServiceUnavailable, code: RPCInternalError, message: what + " control is not available"})
		return
	}
	res, rerr := do(c)
	if rerr != nil {
		writeRPCError(w, c.rpc.ID, *rerr)
		return
	}
	writeRPCResult(w, c.rpc.ID, res)
}

// controlError maps an error of a lookup or a Controller to a JSON-RPC
// error; nil for nil.
func (s *Server) controlError(r *http.Request, err error) *RPCError {
	var ae *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return &RPCError{status: ae.status, code: RPCInvalidRequest, message: ae.msg}
	case errors.Is(err, store.ErrNotFound):
		return &RPCError{status: http.StatusNotFound, code: RPCInvalidRequest, message: err.Error()}
	case errors.Is(err, build.ErrNotHere):
		return &RPCError{status: http.StatusConflict, code: RPCServerError, message: err.Error()}
	}
	s.log.Error("control", "path", r.URL.Path, "err", err)
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
