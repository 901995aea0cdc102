package build

import (
	"encoding/json"

	"github.com/gbb-ci/gbb/pkg/store"
)

// chosenWorker returns the worker the request r asks for: its buildset's
// property "workername" (set by a force scheduler's worker_choice param),
// or "" for none. Buildbot honours it through the builder's canStartBuild
// enforceChosenWorker; gbb honours it on every builder, when it names one
// of the builder's workers (see pickWorker).
func (e *Engine) chosenWorker(r store.BuildRequest) string {
	bs, err := e.st.Buildset(r.BuildsetID)
	if err != nil {
		return "" // the claim or the build finds it too
	}
	p, ok := bs.Properties["workername"]
	if !ok {
		return ""
	}
	var name string
	if json.Unmarshal(p.Value, &name) != nil {
		return "" // not a string: no choice, as buildbot's
	}
	return name
}

// notePinned records the requests of a round left waiting for their
// chosen worker, by builder id, and starts another round when there are
// more than pending read past: the requests behind them may run now.
func (e *Engine) notePinned(pinned map[int64]int) {
	e.mu.Lock()
	more := false
	for id, n := range pinned {
		more = more || n > e.pinned[id]
	}
	e.pinned = pinned
	e.mu.Unlock()
	if more {
		e.Wake()
	}
}
