package ui

import (
	"errors"

	"github.com/gbb-ci/gbb/pkg/store"
)

// The pages ask the store for the page of builds they show, newest first
// (store.BuildFilter's Desc, Offset and Limit): the store reads only those
// builds, never a builder's whole history.

// found turns a lookup's error into whether the thing exists.
func found(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, err
}

// lastNumber is the number of a builder's newest build; 0 when none.
func (s *Server) lastNumber(builderID int64) (int64, error) {
	last, err := s.lastBuilds(builderID, 0, 1)
	if err != nil || len(last) == 0 {
		return 0, err
	}
	return last[0].Number, nil
}

// lastBuilds returns up to n builds of a builder, newest first, skipping
// the skip newest.
func (s *Server) lastBuilds(builderID, skip int64, n int) ([]store.Build, error) {
	if n <= 0 {
		return nil, nil
	}
	return s.cfg.Store.Builds(store.BuildFilter{BuilderID: builderID, Desc: true, Offset: int(skip), Limit: n})
}

// buildsDown returns up to n builds of a builder, numbered from number
// down.
func (s *Server) buildsDown(builderID, number int64, n int) ([]store.Build, error) {
	var out []store.Build
	for num := number; num >= 1 && len(out) < n; num-- {
		b, err := s.cfg.Store.BuildByNumber(builderID, num)
		if ok, err := found(err); err != nil {
			return nil, err
		} else if ok {
			out = append(out, b)
		}
	}
	return out, nil
}

// recentBuilds returns up to n of the newest builds, newest first.
func (s *Server) recentBuilds(n int) ([]store.Build, error) {
	if n <= 0 {
		return nil, nil
	}
	return s.cfg.Store.Builds(store.BuildFilter{Desc: true, Limit: n})
}
