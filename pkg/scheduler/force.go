package scheduler

import (
	"errors"
	"fmt"
)

// ErrNoScheduler is returned by Force when no force scheduler has the name.
var ErrNoScheduler = errors.New("scheduler: no such force scheduler")

// ForceRequest is what a user asks a force scheduler for, as buildbot's
// ForceScheduler "force" JSON-RPC parameters.
type ForceRequest struct {
	// BuilderID, when set, builds only that builder; it must be one of the
	// scheduler's. BuilderNames, when set, builds those; both zero means all
	// of the scheduler's builders.
	BuilderID    int64
	BuilderNames []string
	Reason       string // empty means "force build"
	Owner        string // buildbot's "username"/"owner"
	Branch       string
	Revision     string
	Repository   string
	Project      string
	Properties   map[string]any
}

// ForceInfo describes a force scheduler for the API and the UI.
type ForceInfo struct {
	Name         string
	Label        string
	ButtonName   string
	BuilderNames []string
}

// ParamError is returned by Force when a request parameter is invalid.
type ParamError struct {
	Field string
	Msg   string
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }
