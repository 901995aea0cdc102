package build

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// collapse applies collapse_requests: of the pending requests of a builder
// that collapses, those that build the same sources (codebase, repository,
// branch and project of every source stamp) are reduced to the newest; the
// older ones are claimed and end SKIPPED, as buildbot's collapseRequests.
// Requests a trigger step waits for are never collapsed. It returns the
// requests left to build.
func (e *Engine) collapse(reqs []store.BuildRequest, names map[int64]string) ([]store.BuildRequest, error) {
	e.mu.Lock()
	collapsing := map[int64]bool{}
	for id, name := range names {
		if b, ok := e.builders[name]; ok && b.CollapseRequests {
			collapsing[id] = true
		}
	}
	e.mu.Unlock()
	if len(collapsing) == 0 {
		return reqs, nil
	}
	newest := map[string]store.BuildRequest{} // by builder and sources
	keys := make(map[int64]string, len(reqs))
	for _, r := range reqs {
		if !collapsing[r.BuilderID] || r.WaitedFor {
			continue
		}
		bs, err := e.st.Buildset(r.BuildsetID)
		if err != nil {
			return nil, fmt.Errorf("collapse request %d: %w", r.ID, err)
		}
		k := fmt.Sprintf("%d|%s", r.BuilderID, sourcesKey(bs.SourceStamps))
		keys[r.ID] = k
		if n, ok := newest[k]; !ok || r.SubmittedAt.After(n.SubmittedAt) || r.SubmittedAt.Equal(n.SubmittedAt) && r.ID > n.ID {
			newest[k] = r
		}
	}
	out := reqs[:0:0]
	for _, r := range reqs {
		k, ok := keys[r.ID]
		if !ok || newest[k].ID == r.ID {
			out = append(out, r)
			continue
		}
		now := time.Now()
		if err := e.st.ClaimBuildRequest(r.ID, e.masterID, now); err != nil {
			if errors.Is(err, store.ErrClaimed) {
				continue
			}
			return nil, err
		}
		if err := e.st.CompleteBuildRequest(r.ID, store.Skipped, now); err != nil {
			return nil, err
		}
		e.log.Info("build request collapsed into a newer one", "buildrequest", r.ID, "into", newest[k].ID)
	}
	return out, nil
}

// sourcesKey identifies what source stamps build, revision aside.
func sourcesKey(ss []store.SourceStamp) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = strings.Join([]string{s.Codebase, s.Repository, s.Branch, s.Project}, "\x00")
	}
	slices.Sort(parts)
	return strings.Join(parts, "\x01")
}
