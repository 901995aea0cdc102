package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// schedulerParam is the configured scheduler that the {schedulerid} path
// parameter names.
func (s *Server) schedulerParam(r *http.Request) (SchedulerInfo, error) {
	id, err := idParam(r, "schedulerid", "scheduler")
	if err != nil {
		return SchedulerInfo{}, err
	}
	for _, si := range s.schedulers() {
		if si.ID == id {
			return si, nil
		}
	}
	return SchedulerInfo{}, NotFound("no such scheduler %d", id)
}

// enableScheduler does buildbot's "enable" on /schedulers/N: its one
// parameter, enabled, a boolean, is required.
func (s *Server) enableScheduler(c *Call) *RPCError {
	if c.rpc == nil {
		return noMethod(c.Action, c.route.what)
	}
	raw, ok := c.rpc.Params["enabled"]
	var enabled *bool // null leaves a bool as it was: not a boolean either
	if !ok || json.Unmarshal(raw, &enabled) != nil || enabled == nil {
		return &RPCError{status: http.StatusBadRequest, code: RPCInvalidParams, message: "enabled must be given, true or false"}
	}
	if s.cfg.EnableScheduler == nil {
		return &RPCError{status: http.StatusServiceUnavailable, code: RPCInternalError, message: "scheduler control is not available"}
	}
	err := s.cfg.EnableScheduler(c.Sched.Name, *enabled)
	switch {
	case err == nil:
		user := ""
		if c.User != nil {
			user = c.User.Name
		}
		s.log.Info("scheduler enabled changed", "scheduler", c.Sched.Name, "enabled", *enabled, "user", user)
		s.publishScheduler(c.Sched, *enabled)
		return nil
	case errors.Is(err, scheduler.ErrUnknownScheduler):
		return &RPCError{status: http.StatusNotFound, code: RPCInvalidRequest, message: "no such scheduler " + c.Sched.Name}
	}
	s.log.Error("enable scheduler", "scheduler", c.Sched.Name, "err", err)
	return &RPCError{status: http.StatusInternalServerError, code: RPCInternalError, message: "internal error"}
}

// publishScheduler publishes schedulers/N/updated with the scheduler's
// record, as buildbot's schedulerEnable does, so that a page showing the
// switch follows it.
func (s *Server) publishScheduler(si SchedulerInfo, enabled bool) {
	if s.cfg.Publish == nil {
		return
	}
	si.Enabled = enabled
	obj, err := s.schedulerObj(si)
	if err != nil {
		s.log.Error("scheduler event not published", "scheduler", si.Name, "err", err)
		return
	}
	s.cfg.Publish("schedulers/"+strconv.FormatInt(si.ID, 10)+"/updated", obj)
}
