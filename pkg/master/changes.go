package master

import (
	"encoding/json"
	"fmt"

	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/web"

	"github.com/gbb-ci/gbb/pkg/store"
)

// hookConfigs is what the web server needs of the change hooks' config.
func hookConfigs(cfg map[string]config.ChangeHook) map[string]hooks.Config {
	out := make(map[string]hooks.Config, len(cfg))
	for dialect, h := range cfg {
		out[dialect] = hooks.Config{Secret: h.Secret, Codebase: h.Codebase}
	}
	return out
}

// schedulerInfos lists the configured schedulers for the API, in config
// order, with the ids schedulerIDs gave them.
func (m *Master) schedulerInfos() []web.SchedulerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]web.SchedulerInfo, 0, len(m.cfg.Schedulers))
	for _, s := range m.cfg.Schedulers {
		out = append(out, web.SchedulerInfo{ID: m.schedIDs[s.Name], Name: s.Name, Enabled: m.schedulerEnabledLocked(s)})
	}
	return out
}

// schedulerIDsObject and schedulerIDsKey name where the schedulers' ids are
// kept in the store's state: a JSON object from name to id.
const schedulerIDsObject, schedulerIDsKey = "gbb-master", "scheduler_ids"

// schedulerIDs returns the API id of each scheduler, by name, as buildbot
// keeps them in its schedulers table: a scheduler keeps its id across
// restarts and reconfigs however the config is reordered or others are
// removed, and a new one gets an id never given before. The ids of
// schedulers removed from the config stay kept, for when they return.
func schedulerIDs(st store.Store, scheds []config.Scheduler) (map[string]int64, error) {
	ids := map[string]int64{}
	raw, found, err := st.GetState(schedulerIDsObject, schedulerIDsKey)
	if err != nil {
		return nil, fmt.Errorf("read scheduler ids: %w", err)
	}
	if found {
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, fmt.Errorf("read scheduler ids: %w", err)
		}
	}
	var last int64
	for _, id := range ids {
		last = max(last, id)
	}
	added := false
	for _, s := range scheds {
		if _, ok := ids[s.Name]; !ok {
			last++
			ids[s.Name], added = last, true
		}
	}
	if added {
		value, err := json.Marshal(ids)
		if err != nil {
			return nil, err
		}
		if err := st.SetState(schedulerIDsObject, schedulerIDsKey, value); err != nil {
			return nil, fmt.Errorf("keep scheduler ids: %w", err)
		}
	}
	return ids, nil
}
