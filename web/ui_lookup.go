package web

import (
	"errors"

	"github.com/gbb-ci/gbb/pkg/store"
)

// The pages find recent builds by direct lookups rather than by listing:
// the store numbers a builder's builds 1, 2, 3… and gives builds ids 1, 2,
// 3…, so the newest is found by an exponential then a binary search, in
// about 2·log2(n) lookups, and a page of builds costs one lookup each.

// lastIndex is the highest i ≥ 1 for which exists(i) holds, assuming it
// holds for every i up to that one; 0 when exists(1) does not hold.
func lastIndex(exists func(int64) (bool, error)) (int64, error) {
	lo, hi := int64(0), int64(1) // exists(lo) (or lo == 0); hi unknown
	for {
		ok, err := exists(hi)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 { // exists(lo), !exists(hi)
		mid := lo + (hi-lo)/2
		ok, err := exists(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

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
	return lastIndex(func(n int64) (bool, error) {
		_, err := s.cfg.Store.BuildByNumber(builderID, n)
		return found(err)
	})
}

// lastBuildID is the id of the newest build; 0 when none.
func (s *Server) lastBuildID() (int64, error) {
	return lastIndex(func(id int64) (bool, error) {
		_, err := s.cfg.Store.Build(id)
		return found(err)
	})
}

// lastBuilds returns up to n builds of a builder, newest first, skipping
// the skip newest.
func (s *Server) lastBuilds(builderID, skip int64, n int) ([]store.Build, error) {
	last, err := s.lastNumber(builderID)
	if err != nil {
		return nil, err
	}
	return s.buildsDown(builderID, last-skip, n)
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
	last, err := s.lastBuildID()
	if err != nil {
		return nil, err
	}
	var out []store.Build
	for id := last; id >= 1 && len(out) < n; id-- {
		b, err := s.cfg.Store.Build(id)
		if ok, err := found(err); err != nil {
			return nil, err
		} else if ok {
			out = append(out, b)
		}
	}
	return out, nil
}
