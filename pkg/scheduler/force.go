package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/gbb-ci/gbb/pkg/store"
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

// forceScheduler is one configured force scheduler.
type forceScheduler struct {
	name     string
	builders []string
}

// Force adds a buildset for the force scheduler called name, after checking
// req, and wakes the distributor. It returns the buildset id and the build
// request id of each builder.
func (s *Set) Force(ctx context.Context, name string, req ForceRequest) (int64, map[int64]int64, error) {
	s.mu.Lock()
	fs, ok := s.force[name]
	s.mu.Unlock()
	if !ok {
		return 0, nil, fmt.Errorf("%w: %q", ErrNoScheduler, name)
	}
	names := fs.builders
	switch {
	case req.BuilderID != 0:
		b, err := s.store.Builder(req.BuilderID)
		if err != nil || !slices.Contains(fs.builders, b.Name) {
			return 0, nil, &ParamError{Field: "builderid", Msg: fmt.Sprintf("builder %d is not a builder of force scheduler %q", req.BuilderID, name)}
		}
		names = []string{b.Name}
	case len(req.BuilderNames) > 0:
		for _, n := range req.BuilderNames {
			if !slices.Contains(fs.builders, n) {
				return 0, nil, &ParamError{Field: "builderNames", Msg: fmt.Sprintf("builder %q is not a builder of force scheduler %q", n, name)}
			}
		}
		names = req.BuilderNames
	}
	ids := make([]int64, 0, len(names))
	for _, n := range names {
		b, err := s.store.BuilderByName(n)
		if err != nil {
			return 0, nil, fmt.Errorf("force %s: builder %q: %w", name, n, err)
		}
		ids = append(ids, b.ID)
	}
	reason := req.Reason
	if reason == "" {
		reason = "force build"
	}
	const src = "Force Build Form"
	props := store.Properties{}
	for k, v := range req.Properties {
		p, err := NewProperty(v, src)
		if err != nil {
			return 0, nil, &ParamError{Field: k, Msg: err.Error()}
		}
		props[k] = p
	}
	for k, v := range map[string]string{"reason": reason, "owner": req.Owner, "scheduler": name} {
		if v == "" {
			continue
		}
		source := src
		if k == "scheduler" {
			source = "Scheduler"
		}
		props[k], _ = NewProperty(v, source)
	}
	bsid, brids, err := s.store.AddBuildset(store.NewBuildset{
		Reason:        fmt.Sprintf("The web-page 'force' button was pressed by '%s': %s", orUnknown(req.Owner), reason),
		SchedulerName: name,
		SourceStamps: []store.SourceStamp{{
			Branch:     req.Branch,
			Revision:   req.Revision,
			Repository: req.Repository,
			Project:    req.Project,
		}},
		Properties: props,
		BuilderIDs: ids,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("force %s: %w", name, err)
	}
	s.log.Info("build forced", "scheduler", name, "buildset", bsid, "builders", names, "owner", req.Owner)
	s.wake()
	return bsid, brids, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// NewProperty encodes v as a property value from source.
func NewProperty(v any, source string) (store.Property, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return store.Property{}, fmt.Errorf("encode property: %w", err)
	}
	return store.Property{Value: b, Source: source}, nil
}

// ForceSchedulers describes the force schedulers, in config order.
func (s *Set) ForceSchedulers() []ForceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ForceInfo, 0, len(s.forceOrder))
	for _, n := range s.forceOrder {
		fs := s.force[n]
		out = append(out, ForceInfo{
			Name:         fs.name,
			Label:        fs.name,
			ButtonName:   fs.name,
			BuilderNames: slices.Clone(fs.builders),
		})
	}
	return out
}
