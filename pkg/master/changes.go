package master

import (
	"context"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/web"

	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
)

// changeSink stores changes that arrive from outside (webhooks,
// sendchange) and offers them to the schedulers, as the pollers do.
type changeSink struct {
	st     *store.DB
	scheds *scheduler.Set
}

func (c changeSink) AddChanges(ctx context.Context, changes []store.Change) ([]store.Change, error) {
	stored, err := c.st.AddChanges(changes)
	if err != nil {
		return nil, err
	}
	c.scheds.AddChanges(stored)
	return stored, nil
}

// hookConfigs is what the web server needs of the change hooks' config.
func hookConfigs(hooks map[string]config.ChangeHook) map[string]web.HookConfig {
	out := make(map[string]web.HookConfig, len(hooks))
	for dialect, h := range hooks {
		out[dialect] = web.HookConfig{Secret: h.Secret}
	}
	return out
}

// schedulerInfos lists the configured schedulers for the API, numbered
// from 1 in config order.
func (m *Master) schedulerInfos() []web.SchedulerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]web.SchedulerInfo, 0, len(m.cfg.Schedulers))
	for i, s := range m.cfg.Schedulers {
		out = append(out, web.SchedulerInfo{ID: int64(i + 1), Name: s.Name, Enabled: true})
	}
	return out
}
