package ui

import (
	"fmt"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// The home page's trends (the queue's length and the busy workers over
// the last hours) are derived from the store alone, so they are as true
// after a restart as before it: a request waited from its submission to
// its claim (or its completion, cancelled unclaimed, or now); a worker was
// busy while one of its builds ran. Reading is bounded: the newest builds
// and requests are read in batches, newest first, until a whole batch
// ended before the window or trendMaxRecords were read; the running builds
// and the requests still waiting come from the store's indexes of them.
// When the cap stops the reading first, the charts start at the oldest
// time fully read (and say so).
//
// What may be missed: a request submitted before the window and cancelled
// unclaimed within it, older than a whole batch of requests that all ended
// before the window (its waiting shows from when it was read, not at all).
// A build that started before the window and ended within it is found
// unless a whole batch of newer builds ended before the window.

const (
	trendWindow     = 6 * time.Hour
	trendSlices     = 180 // two minutes each
	trendBatch      = 100
	trendMaxRecords = 1000 // of builds, and of requests, read per drawing
	// trendMaxAge is how long the drawn charts serve the home page (and
	// its live refreshes, one per build event) while nothing they show
	// changed, before they are drawn again to move the window: a slice
	// is two minutes, and a drawing reads up to 2 × trendMaxRecords
	// records.
	trendMaxAge = 30 * time.Second
)

type trends struct {
	Queue, Busy seriesChart
	// Partial is set when the cap cut the window short: the charts start
	// at From instead of trendWindow ago.
	Partial bool
	From    string
	Hours   int
}

// cachedTrends returns the home page's charts: those drawn last while
// nothing they show has changed (the same requests waiting, the same
// builds running, no request or build added) and they are younger than
// trendMaxAge; else it draws them again.
func (s *Server) cachedTrends(now time.Time) (*trends, error) {
	key, err := s.trendsKey()
	if err != nil {
		return nil, err
	}
	s.trendsMu.Lock()
	defer s.trendsMu.Unlock()
	if s.trends != nil && s.trendsFor == key && now.Sub(s.trendsAt) < trendMaxAge && !now.Before(s.trendsAt) {
		return s.trends, nil
	}
	t, err := s.homeTrends(now)
	if err != nil {
		return nil, err
	}
	s.trends, s.trendsAt, s.trendsFor = t, now, key
	return t, nil
}

// trendsKey sums up, from the store's counters and its index of the
// running builds, what the trends depend on: it changes when a request is
// added or ends (built or cancelled), or a build starts or ends.
func (s *Server) trendsKey() (string, error) {
	builds, err := s.cfg.Store.CountBuilds(store.BuildFilter{})
	if err != nil {
		return "", err
	}
	reqs, err := s.cfg.Store.CountBuildRequests(store.BuildRequestFilter{})
	if err != nil {
		return "", err
	}
	running, err := s.cfg.Store.CountBuilds(store.BuildFilter{Complete: new(false)})
	if err != nil {
		return "", err
	}
	waiting, err := s.cfg.Store.CountBuildRequests(store.BuildRequestFilter{Complete: new(false)})
	if err != nil {
		return "", err
	}
	// A claim is followed by its build's start, which the count of
	// builds shows; an end of a request or build lowers a count of
	// incomplete ones.
	return fmt.Sprint(builds, reqs, running, waiting), nil
}

// homeTrends reads the store and draws the home page's charts for the
// window ending at now.
func (s *Server) homeTrends(now time.Time) (*trends, error) {
	from := now.Add(-trendWindow)
	builds, buildsFrom, err := s.trendBuilds(from)
	if err != nil {
		return nil, err
	}
	reqs, reqsFrom, err := s.trendRequests(from, builds)
	if err != nil {
		return nil, err
	}
	start := from
	if buildsFrom.After(start) {
		start = buildsFrom
	}
	if reqsFrom.After(start) {
		start = reqsFrom
	}
	var waits, busy []interval
	for _, br := range reqs {
		iv := interval{Start: br.SubmittedAt}
		switch {
		case br.Claimed && !br.ClaimedAt.IsZero():
			iv.End = br.ClaimedAt
		case br.Complete:
			iv.End = br.CompleteAt
		}
		waits = append(waits, iv)
	}
	for _, b := range builds {
		iv := interval{Start: b.StartedAt, Key: b.WorkerID}
		if b.Complete {
			iv.End = b.CompleteAt
		}
		if iv.Key == 0 { // a build with no worker keeps no worker busy
			continue
		}
		busy = append(busy, iv)
	}
	t := &trends{Partial: start.After(from), From: start.UTC().Format(time.DateTime), Hours: int(trendWindow / time.Hour)}
	qd, bd := deltasOf(waits), deltasOf(busy)
	qv, qat := seriesValues(qd, start, now, trendSlices)
	bv, bat := seriesValues(bd, start, now, trendSlices)
	t.Queue = seriesChartOf("queue-chart", "queue", "Pending build requests", qv, qat, countAt(qd, now), start, now)
	t.Busy = seriesChartOf("busy-chart", "busy", "Busy workers", bv, bat, countAt(bd, now), start, now)
	return t, nil
}

// trendBuilds returns the builds that may have run after from: the newest,
// read back in batches, and every running build. oldest is the time from
// which they are complete: from, or later when the cap stopped the reading.
func (s *Server) trendBuilds(from time.Time) (builds []store.Build, oldest time.Time, err error) {
	seen := map[int64]bool{}
	oldest = from
	var before int64
	for read := 0; read < trendMaxRecords; {
		batch, err := s.cfg.Store.Builds(store.BuildFilter{Desc: true, Before: before, Limit: trendBatch})
		if err != nil {
			return nil, time.Time{}, err
		}
		done := len(batch) < trendBatch
		allBefore := true
		for _, b := range batch {
			seen[b.ID] = true
			builds = append(builds, b)
			if !b.Complete || !b.CompleteAt.Before(from) {
				allBefore = false
			}
			before = b.ID
		}
		read += len(batch)
		if done || allBefore {
			break
		}
		if read >= trendMaxRecords {
			oldest = batch[len(batch)-1].StartedAt
		}
	}
	running, err := s.cfg.Store.Builds(store.BuildFilter{Complete: new(false)})
	if err != nil {
		return nil, time.Time{}, err
	}
	for _, b := range running {
		if !seen[b.ID] {
			builds = append(builds, b)
		}
	}
	return builds, oldest, nil
}

// trendRequests returns the requests that may have waited after from: the
// newest, read back in batches, the ones still waiting, and those of the
// builds (claimed within the window, perhaps submitted long before).
func (s *Server) trendRequests(from time.Time, builds []store.Build) (reqs []store.BuildRequest, oldest time.Time, err error) {
	seen := map[int64]bool{}
	oldest = from
	for read := 0; read < trendMaxRecords; {
		batch, err := s.cfg.Store.BuildRequests(store.BuildRequestFilter{Desc: true, Offset: read, Limit: trendBatch})
		if err != nil {
			return nil, time.Time{}, err
		}
		done := len(batch) < trendBatch
		allBefore := true
		for _, br := range batch {
			seen[br.ID] = true
			reqs = append(reqs, br)
			end := br.ClaimedAt
			if !br.Claimed {
				end = br.CompleteAt
			}
			if !(br.Claimed || br.Complete) || !end.Before(from) {
				allBefore = false
			}
		}
		read += len(batch)
		if done || allBefore {
			break
		}
		if read >= trendMaxRecords {
			oldest = batch[len(batch)-1].SubmittedAt
		}
	}
	waiting, err := s.cfg.Store.BuildRequests(store.BuildRequestFilter{Complete: new(false), Claimed: new(false)})
	if err != nil {
		return nil, time.Time{}, err
	}
	for _, br := range waiting {
		if !seen[br.ID] {
			seen[br.ID] = true
			reqs = append(reqs, br)
		}
	}
	for _, b := range builds {
		if b.BuildRequestID == 0 || seen[b.BuildRequestID] {
			continue
		}
		if !b.Complete || !b.CompleteAt.Before(from) {
			br, err := s.cfg.Store.BuildRequest(b.BuildRequestID)
			if ok, err := found(err); err != nil {
				return nil, time.Time{}, err
			} else if ok {
				seen[br.ID] = true
				reqs = append(reqs, br)
			}
		}
	}
	return reqs, oldest, nil
}
