package master

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/changesource"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/pkg/store"
)

// pollers runs the configured change sources; a reconfig stops the ones
// removed or changed and starts the new ones, leaving the others polling.
type pollers struct {
	basedir string
	st      changesource.Store
	notify  func([]store.Change)
	log     *slog.Logger
	secrets changesource.Secrets // nil when there is no secrets provider
	metrics *metrics.Metrics     // nil counts nothing

	mu      sync.Mutex
	running map[string]*runningPoller // guarded by mu; by change source name
	wg      sync.WaitGroup
}

type runningPoller struct {
	cfg    config.ChangeSource
	cancel context.CancelFunc
	done   chan struct{} // closed when its goroutine has returned
}

func newPollers(basedir string, st changesource.Store, notify func([]store.Change), sec changesource.Secrets, log *slog.Logger) *pollers {
	return &pollers{basedir: basedir, st: st, notify: notify, secrets: sec, log: log, running: map[string]*runningPoller{}}
}

// apply makes the running pollers those of cfgs; new ones run under ctx.
// It does not wait for the pollers it stops: one in the middle of a slow
// fetch stops when its fetch sees the cancellation, and a successor of the
// same name (a changed config), which shares its state in the store, starts
// polling only once it has.
func (p *pollers) apply(ctx context.Context, cfgs []config.ChangeSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]config.ChangeSource{}
	for _, cs := range cfgs {
		want[cs.Name] = cs
	}
	stopping := map[string]chan struct{}{}
	for name, rp := range p.running {
		if cs, ok := want[name]; !ok || !sameSource(cs, rp.cfg) {
			rp.cancel()
			stopping[name] = rp.done
			delete(p.running, name)
		}
	}
	for _, cs := range cfgs {
		if _, ok := p.running[cs.Name]; ok {
			continue
		}
		gp := changesource.NewGitPoller(changesource.GitPollerConfig{
			Name:                     cs.Name,
			RepoURL:                  cs.RepoURL,
			Branches:                 cs.Branches,
			AllBranches:              cs.AllBranches,
			BranchRegex:              cs.BranchRegexp(),
			PollInterval:             cs.PollInterval.Duration,
			PollTimeout:              cs.PollTimeout.Duration,
			PollAtLaunch:             cs.PollAtLaunch,
			OnlyTags:                 cs.OnlyTags,
			BuildPushesWithNoCommits: cs.BuildPushesWithNoCommits,
			Category:                 cs.Category,
			Codebase:                 cs.Codebase,
			Project:                  cs.Project,
			RevLink:                  cs.RevLink,
			Workdir:                  cs.WorkdirPath(p.basedir),
			SSHKeyFile:               cs.SSHPrivateKeyFile,
			SSHKnownHostsFile:        cs.SSHKnownHostsFile,
			HTTPUsername:             cs.HTTPUsername,
			HTTPPasswordSecret:       cs.HTTPPasswordSecret,
			Secrets:                  p.secrets,
			OnPoll: func(d time.Duration, err error) {
				p.metrics.Poll(cs.Name, d, err)
			},
		}, p.st, p.notify, p.log.With("change_source", cs.Name))
		pctx, cancel := context.WithCancel(ctx)
		rp := &runningPoller{cfg: cs, cancel: cancel, done: make(chan struct{})}
		p.running[cs.Name] = rp
		prev := stopping[cs.Name]
		p.wg.Go(func() {
			defer close(rp.done)
			if prev != nil {
				select {
				case <-prev:
				case <-pctx.Done():
					return
				}
			}
			if err := gp.Run(pctx); err != nil {
				p.log.Error("change source stopped", "change_source", cs.Name, "err", err)
			}
		})
	}
}

// sameSource reports whether two configs poll the same way (their line in
// the file may differ).
func sameSource(a, b config.ChangeSource) bool {
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}

// stop stops every poller and returns once they have: the master no
// longer leads, or stops. A later apply starts them again.
func (p *pollers) stop() {
	p.mu.Lock()
	for name, rp := range p.running {
		rp.cancel()
		delete(p.running, name)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
