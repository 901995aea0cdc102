package build

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// collapse applies collapse_requests: a pending request of a builder that
// collapses is claimed and ends SKIPPED when a newer pending request of
// that builder can take its place, as buildbot's collapseRequests with its
// default rule (canCollapse). Requests a trigger step waits for are never
// collapsed. It returns the requests left to build.
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
	byBuilder := map[int64][]store.BuildRequest{}
	sets := map[int64]store.Buildset{}
	for _, r := range reqs {
		if !collapsing[r.BuilderID] || r.WaitedFor {
			continue
		}
		if _, ok := sets[r.BuildsetID]; !ok {
			bs, err := e.st.Buildset(r.BuildsetID)
			if err != nil {
				return nil, fmt.Errorf("collapse request %d: %w", r.ID, err)
			}
			sets[r.BuildsetID] = bs
		}
		byBuilder[r.BuilderID] = append(byBuilder[r.BuilderID], r)
	}
	into := map[int64]int64{} // collapsed request → the newer one it goes into
	for _, rs := range byBuilder {
		for _, old := range rs {
			for _, n := range rs {
				if n.ID > old.ID && canCollapse(sets[n.BuildsetID], sets[old.BuildsetID]) {
					into[old.ID] = n.ID
					break
				}
			}
		}
	}
	out := reqs[:0:0]
	for _, r := range reqs {
		newer, ok := into[r.ID]
		if !ok {
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
		if err := e.st.CompleteBuildRequestOf(r.ID, e.masterID, store.Skipped, now); err != nil {
			return nil, err
		}
		e.log.Info("build request collapsed into a newer one", "buildrequest", r.ID, "into", newer)
	}
	return out, nil
}

// canCollapse reports whether a request of buildset old may be dropped for
// one of the newer buildset n (of the same builder), as buildbot 3.7's
// BuildRequest.canBeCollapsed: the same buildset, or the same codebases,
// each with the same repository, branch and project; both made by changes,
// or neither and then of the same revision; and the same properties from
// their scheduler (its name aside). gbb's source stamps carry no patch.
// A buildset's changes stand for those of each of its source stamps.
func canCollapse(n, old store.Buildset) bool {
	if n.ID == old.ID {
		return true
	}
	type source struct{ repository, branch, project, revision string }
	sources := func(bs store.Buildset) map[string]source {
		m := make(map[string]source, len(bs.SourceStamps))
		for _, s := range bs.SourceStamps {
			m[s.Codebase] = source{s.Repository, s.Branch, s.Project, s.Revision}
		}
		return m
	}
	newSrc, oldSrc := sources(n), sources(old)
	if len(newSrc) != len(oldSrc) {
		return false
	}
	nChanges, oChanges := len(n.ChangeIDs) > 0, len(old.ChangeIDs) > 0
	if nChanges != oChanges {
		return false
	}
	for cb, a := range newSrc {
		b, ok := oldSrc[cb]
		if !ok || a.repository != b.repository || a.branch != b.branch || a.project != b.project {
			return false
		}
		if !nChanges && a.revision != b.revision {
			return false
		}
	}
	np, op := schedulerProps(n.Properties), schedulerProps(old.Properties)
	if len(np) != len(op) {
		return false
	}
	for k, v := range np {
		if w, ok := op[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// schedulerProps are the properties a scheduler set on a buildset, but its
// own name: what buildbot compares before collapsing.
func schedulerProps(p store.Properties) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range p {
		if k != "scheduler" && v.Source == "Scheduler" {
			out[k] = v.Value
		}
	}
	return out
}
