package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/pkg/bbworker"
	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/metrics"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/reporter"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web"
)

// Version is the gbb version the master reports to workers and the API.
var Version = "dev"

// Master is one build master.
type Master struct {
	basedir string
	log     *slog.Logger

	mu      sync.Mutex
	cfg     *config.Config // guarded by mu
	st      store.Store    // guarded by mu; set while Run runs
	engine  *build.Engine  // guarded by mu; likewise
	scheds  *scheduler.Set // guarded by mu; likewise: the force and triggerable schedulers, which run on every master
	pollers *pollers       // guarded by mu; likewise; polling only while this master leads
	// lead are the schedulers only the leader runs (see leader.go), and
	// leadCtx the context of its term, for the pollers a reconfig starts;
	// both nil while this master does not lead.
	lead    *scheduler.Set  // guarded by mu
	leadCtx context.Context // guarded by mu
	// leadMu is held for reading while changes are offered to lead, and
	// for writing when a term ends: no change is offered to schedulers
	// that stopped.
	leadMu sync.RWMutex
	web    *web.Server // guarded by mu; set while Run runs
	wtls   *workerTLS  // guarded by mu; the worker port's TLS while Run runs; nil when tls is off
	// reporters and missing follow the config's reporters and workers.
	reporters *reporter.Dispatcher // guarded by mu; set while Run runs
	missing   *missingWatcher      // guarded by mu; likewise
	// schedIDs are the schedulers' API ids, by name (see schedulerIDs).
	schedIDs map[string]int64 // guarded by mu
	// names arbitrates a worker name across the gRPC, PB and msgpack
	// ports.
	names workerNames
	// bbws are the attached buildbot-workers while Run runs.
	bbws *bbWorkers // guarded by mu

	// notReady is why /readyz answers 503 ("" once ready): starting,
	// stopping, or stopping cleanly.
	notReady atomic.Pointer[string]
	// pingLogged is when Ready last logged why the database did not
	// answer (unix nanoseconds): at most every pingLogEvery.
	pingLogged atomic.Int64
	// masterID is this master's id in the store while Run runs.
	masterID atomic.Int64

	// readyKey is the secret /readyz proves it holds (SetReadyKey).
	readyKey []byte

	// cleanStop is closed by StopClean (once, under cleanOnce).
	cleanStop chan struct{}
	cleanOnce sync.Once
}

// Addrs are where a running master listens.
type Addrs struct {
	Worker net.Addr // the gRPC port workers dial
	Web    net.Addr
	// PB and Msgpack are the buildbot-worker ports; nil when off.
	PB, Msgpack net.Addr
}

// New makes a master for the config loaded from basedir; a nil log discards.
func New(basedir string, cfg *config.Config, log *slog.Logger) *Master {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Master{basedir: basedir, cfg: cfg, log: log, cleanStop: make(chan struct{})}
	m.setNotReady("starting")
	return m
}

// SetReadyKey sets, before Run, the secret with which /readyz proves
// that it is this master answering (web.Config.ReadyKey).
func (m *Master) SetReadyKey(key []byte) { m.readyKey = key }

// setNotReady makes /readyz answer 503 with reason ("" makes it ready).
func (m *Master) setNotReady(reason string) { m.notReady.Store(&reason) }

// Ready returns nil when the master is ready for work (its store open,
// its worker port listening, its config loaded), or why it is not:
// starting, or stopping. /readyz answers with it.
//
// On PostgreSQL it also asks the database, so that a load balancer sends
// no one to a master whose database is away. Why the database does not
// answer (its user, host and name, say) goes to the log, not to whoever
// asks /readyz, which needs no login.
func (m *Master) Ready() error {
	if r := *m.notReady.Load(); r != "" {
		return errors.New(r)
	}
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	if p, ok := st.(interface{ Ping(context.Context) error }); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			now := time.Now().UnixNano()
			if last := m.pingLogged.Load(); now-last >= int64(pingLogEvery) && m.pingLogged.CompareAndSwap(last, now) {
				m.log.Warn("not ready: the database does not answer", "err", err)
			}
			return errors.New("the database does not answer (master.log says why)")
		}
	}
	return nil
}

// pingLogEvery is how often, at most, Ready logs why the database does not
// answer: a load balancer may ask every second.
const pingLogEvery = 10 * time.Second

// StopClean starts a clean shutdown, as buildbot's `stop --clean`: no new
// build starts (requests stay pending in the store; forced builds are still
// accepted), Run waits for the running builds to finish, then returns. It
// reports false when a clean shutdown had already begun. Cancelling Run's
// context still stops at once, the running builds ending RETRY.
func (m *Master) StopClean() bool {
	first := false
	m.cleanOnce.Do(func() {
		first = true
		close(m.cleanStop)
	})
	return first
}

// errStoppedClean ends Run's group once a clean shutdown has no build left.
var errStoppedClean = errors.New("master: stopped cleanly")

// The log messages of a clean shutdown: what it waits for, and that it is
// done (`gbb-master stop --clean` looks for it).
const (
	MsgCleanWaiting = "clean shutdown: waiting for running builds"
	MsgCleanDone    = "clean shutdown: no build running, stopping"
)

// runCleanStop waits for StopClean, then drains the engine, logging what it
// waits for, and returns errStoppedClean once no build runs.
func (m *Master) runCleanStop(ctx context.Context, engine *build.Engine) error {
	select {
	case <-ctx.Done():
		return nil
	case <-m.cleanStop:
	}
	m.setNotReady("stopping cleanly: waiting for the running builds")
	engine.Drain()
	m.log.Info("clean shutdown: no new build starts; pending requests stay in the store; a second stop (SIGTERM, SIGINT) stops at once and running builds run again later")
	for {
		running, gone := engine.Running()
		if len(running) == 0 {
			m.log.Info(MsgCleanDone)
			return errStoppedClean
		}
		names := make([]string, len(running))
		for i, r := range running {
			names[i] = fmt.Sprintf("%s (request %d on %s)", r.Builder, r.BuildRequestID, r.Worker)
		}
		m.log.Info(MsgCleanWaiting, "count", len(running), "builds", names)
		select {
		case <-ctx.Done():
			return nil
		case <-gone:
		}
	}
}

// Run runs the master until ctx is done. ready, when not nil, is called once
// everything listens. Run returns after every component has stopped and the
// store is closed.
func (m *Master) Run(ctx context.Context, ready func(Addrs)) error {
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	logWarnings(m.log, cfg)
	m.setNotReady("starting")
	bus := events.New(events.Config{})
	// The metrics read the store and the engine made below; they are on
	// unless [www] metrics = false (then nothing is counted).
	var (
		st     store.Store
		engine *build.Engine
		srv    *protocol.Server
	)
	var met *metrics.Metrics
	if !cfg.WWW.NoMetrics {
		met = m.newMetrics(&st, &engine, &srv)
		met.InitBuilders(builderNames(cfg.Builders))
	}
	st, err := openStore(cfg.DB, m.basedir, store.Options{Logger: m.log, Events: met.Tap(bus),
		OnCommit: met.Commit, OnLog: met.LogBytes})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			m.log.Error("close store", "err", err)
		}
	}()
	// Once stopping, a store that does not answer (the host cut off from
	// PostgreSQL) is not waited for: its calls fail within seconds (the
	// other masters presume this one dead as usual), while one that
	// answers still records everything below.
	closing, _ := st.(interface{ SetClosing() })
	if closing != nil {
		defer context.AfterFunc(ctx, closing.SetClosing)()
	}
	masterID, err := m.sync(st, cfg)
	if err != nil {
		return err
	}
	m.masterID.Store(masterID)
	sids, err := schedulerIDs(st, cfg.Schedulers)
	if err != nil {
		return err
	}
	if err := clearConnections(st, masterID); err != nil {
		return err
	}

	wlis, err := listen("worker port", cfg.Protocols.GRPC.Addr(), cfg.Protocols.GRPC.Limits, workerShare, workerMin, workerMax, true, m.log)
	if err != nil {
		return err
	}
	defer wlis.Close()
	wtls, err := newWorkerTLS(m.basedir, cfg.Protocols.GRPC, m.log, func(notAfter time.Time) {
		if err := st.SetMasterWorkerCert(masterID, notAfter); err != nil {
			m.log.Error("record the worker port certificate's end", "err", err)
		}
	})
	if err != nil {
		return err
	}
	hlis, err := listen("web port", cfg.WWW.Addr(), cfg.WWW.Limits, webShare, webMin, webMax, false, m.log)
	if err != nil {
		return err
	}
	defer hlis.Close()

	secretsProviders, err := secretsChain(cfg.SecretsProviders)
	if err != nil {
		return err
	}
	// The reporters' outbox is on before any build can start or end
	// (Recover ends the builds a crash left).
	reps := reporter.New(reporter.Config{Store: st, Secrets: secretGetter(secretsProviders), Log: m.log, Title: cfg.Title,
		OnTry: met.Delivery})
	if err := reps.SetConfig(cfg.Reporters, cfg.Workers, cfg.BuildbotURL); err != nil {
		m.log.Error("reporters", "err", err)
	}
	missing := newMissingWatcher(st, bus, cfg.Workers, m.log)
	engine = build.New(build.Config{
		Store:    st,
		MasterID: masterID,
		Builders: cfg.Builders,
		Workers:  cfg.Workers,
		Locks:    cfg.Locks,
		Logger:   m.log,
		Basedir:  m.basedir,
		Secrets:  secretsProviders,
		// Transfers keep away from the master's own files.
		MasterFiles: cfg.MasterFiles(m.basedir),

		LogMaxSize:     cfg.LogMaxSize,
		LogMaxTailSize: cfg.LogMaxTailSize,
		FinishSteps:    cfg.FinishSteps,
	})
	if err := engine.Recover(); err != nil {
		return err
	}
	// Stop, cancel and the worker actions asked of another master, for a
	// build or worker this one holds: the engine acts on them while it
	// runs (build.Engine.Control).
	st.SetControl(engine.Control)
	defer st.SetControl(nil)
	every, _ := splitSchedulers(cfg.Schedulers)
	scheds := scheduler.New(every, st, engine.Wake, m.log)
	pols := newPollers(m.basedir, st, m.offerChanges, secretsProviders, m.log)
	pols.metrics = met
	defer func() {
		m.mu.Lock()
		m.st, m.engine, m.scheds, m.pollers, m.web, m.wtls = nil, nil, nil, nil, nil, nil
		m.reporters, m.missing = nil, nil
		m.bbws = nil
		m.mu.Unlock()
	}()
	engine.SetTriggerer(triggerer{m})

	srv = protocol.NewServer(protocol.ServerConfig{
		Password: m.workerPassword,
		Attach: func(c *protocol.WorkerConn) {
			if !m.claimName(ctx, c.Name(), &nameHolder{
				protocol: "gbb",
				remote:   c.Remote(),
				alive:    c.Probe,
				drop:     c.Close,
				done:     c.Done(),
			}) {
				c.Close(errors.New("a connection of that name over another protocol answers"))
				return
			}
			engine.Attach(c)
		},
		Logger:        m.log,
		MasterVersion: Version,

		KeepaliveTime:    cfg.Protocols.GRPC.KeepaliveInterval,
		KeepaliveTimeout: cfg.Protocols.GRPC.KeepaliveTimeout,
		TLS:              wtls.config(),
	})
	websrv := web.New(web.Config{
		Store:      st,
		Forcer:     scheds,
		Controller: engine,
		MasterID:   masterID,
		MasterName: m.masterName(),
		Leader: func() int64 {
			l, _, err := ReadLeader(st)
			if err != nil {
				m.log.Error("read the leader", "err", err)
			}
			return l.MasterID
		},
		Title:       cfg.Title,
		TitleURL:    cfg.TitleURL,
		BuildbotURL: cfg.BuildbotURL,
		Logger:      m.log,
		Changes:     hooks.StoreSink{DB: st, Then: m.offerChanges},
		ChangeHooks: hookConfigs(cfg.WWW.ChangeHooks),
		Schedulers:  m.schedulerInfos,
		// EnableScheduler: buildbot's enable control on /api/v2/schedulers/N.
		EnableScheduler: m.setSchedulerEnabled,
		BuildbotUI:      cfg.WWW.BuildbotUI,
		MasterFiles:     masterfiles.New(m.basedir, cfg.MasterFiles(m.basedir)),
		Version:         Version,
		Events:          bus,
		Auth:            cfg.WWW.Auth,
		Authz:           cfg.WWW.Authz,

		TrustedProxies: cfg.WWW.TrustedProxies,
		IdleTimeout:    cfg.WWW.IdleTimeout,
		TLS:            cfg.WWW.TLS,
		Metrics:        met,
		Ready:          m.Ready,
		ReadyKey:       m.readyKey,
	})

	g, gctx := errgroup.WithContext(ctx)
	bws := &bbWorkers{changed: map[*bbworker.Worker]chan struct{}{}}
	bbls, err := m.listenBB(gctx, cfg, engine, bws)
	if err != nil {
		return err
	}
	for _, l := range bbls {
		defer l.ln.Close()
	}
	// From here a reconfig applies to the running components; one that
	// came while they were being made is applied now.
	m.mu.Lock()
	m.st, m.engine, m.scheds, m.pollers, m.web, m.wtls = st, engine, scheds, pols, websrv, wtls
	m.reporters, m.missing = reps, missing
	m.schedIDs = sids
	m.bbws = bws
	if m.cfg != cfg {
		err = m.applyLocked(cfg, m.cfg)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	cl := &cluster{
		m: m, st: st, bus: bus, id: masterID, log: m.log,
		beat: cfg.DB.Heartbeat(), timeout: cfg.DB.Timeout(),
		resumeWait: m.finishStepsWait,
		fence:      engine.Fence,
		lead: func(ctx context.Context, started chan<- struct{}) error {
			return m.runLeader(ctx, started, leaderParts{st: st, bus: bus, engine: engine, pollers: pols, reporters: reps, missing: missing})
		},
		now: time.Now,
		// A scheduler enabled or disabled on another master.
		onBeat: m.reloadEnabled,
	}
	firstTry := make(chan struct{})
	declaredDead := false
	g.Go(func() error {
		err := cl.run(gctx, firstTry)
		if errors.Is(err, ErrDeclaredDead) {
			declaredDead = true
		}
		return err
	})
	g.Go(func() error { return scheds.Run(gctx) })
	g.Go(func() error { return watchRequests(gctx, bus, engine.Wake) })
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error { return m.runCleanStop(gctx, engine) })
	g.Go(func() error { return srv.Serve(gctx, wlis) })
	addrs := Addrs{Worker: wlis.Addr(), Web: hlis.Addr()}
	for _, l := range bbls {
		g.Go(func() error { return serveBB(gctx, l, m.log) })
		if l.name == config.ProtocolPB {
			addrs.PB = l.ln.Addr()
		} else {
			addrs.Msgpack = l.ln.Addr()
		}
		m.log.Info("buildbot-worker port listening", "protocol", l.name, "addr", l.ln.Addr().String())
	}
	if wtls != nil {
		g.Go(func() error { return wtls.runExpiryCheck(gctx) })
	}
	g.Go(func() error { return websrv.Serve(gctx, hlis) })
	// On bbolt the first try takes the lead: the schedulers and change
	// sources run before the master says it is ready, as with one master.
	select {
	case <-firstTry:
	case <-gctx.Done():
	}
	m.log.Info("master running", "workers_addr", wlis.Addr().String(), "web_addr", hlis.Addr().String(), "url", cfg.BuildbotURL)
	// Ready: the store is open, the worker port listens, the config is
	// loaded; not once Run's context is done, nor while stopping cleanly.
	m.setNotReady("")
	stopReady := context.AfterFunc(gctx, func() { m.setNotReady("stopping") })
	defer stopReady()
	if ready != nil {
		ready(addrs)
	}
	err = g.Wait()
	m.setNotReady("stopping")
	if closing != nil {
		closing.SetClosing() // stopping cleanly, or presumed dead
	}
	if errors.Is(err, errStoppedClean) {
		err = nil
	}
	if !declaredDead {
		// Stopped: no other master need wait for master_timeout to
		// know (its builds ended RETRY and released their requests).
		// Its last seen is the store's clock, as its heartbeats': the
		// others compare it with master_timeout + finish_steps_wait to
		// end the builds it left to resume (see reapStopped).
		seen, serr := st.Now()
		if serr != nil {
			seen = time.Now()
		}
		if serr := st.SetMasterActive(masterID, false, seen); serr != nil {
			m.log.Error("record this master stopped", "err", serr)
		}
	}
	m.log.Info("master stopped")
	return err
}

// finishStepsWait returns the finish_steps_wait of the current config.
func (m *Master) finishStepsWait() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.FinishSteps.Wait
}

// janitorConfig returns the [janitor] of the current config.
func (m *Master) janitorConfig() config.Janitor {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Janitor
}

func (m *Master) masterName() string {
	host, _ := os.Hostname()
	return host + ":" + m.basedir
}

// sync records this master, its builders and its workers in the store.
func (m *Master) sync(st store.Store, cfg *config.Config) (int64, error) {
	ms, err := st.EnsureMaster(m.masterName())
	if err != nil {
		return 0, fmt.Errorf("register master: %w", err)
	}
	on := map[string][]store.BuilderMaster{}
	for _, b := range cfg.Builders {
		sb, err := st.EnsureBuilder(b.Name)
		if err != nil {
			return 0, fmt.Errorf("register builder %s: %w", b.Name, err)
		}
		if err := st.SetBuilderInfo(sb.ID, b.Description, b.Tags); err != nil {
			return 0, fmt.Errorf("register builder %s: %w", b.Name, err)
		}
		// The other masters sharing the store keep their place, even
		// those starting at the same time.
		if err := st.SetBuilderOnMaster(sb.ID, ms.ID, true); err != nil {
			return 0, fmt.Errorf("register builder %s: %w", b.Name, err)
		}
		for _, w := range b.WorkerNames {
			on[w] = append(on[w], store.BuilderMaster{BuilderID: sb.ID, MasterID: ms.ID})
		}
	}
	// Builders no longer in the config are not on this master any more.
	all, err := st.Builders()
	if err != nil {
		return 0, fmt.Errorf("list builders: %w", err)
	}
	for _, b := range all {
		if slices.ContainsFunc(cfg.Builders, func(c config.Builder) bool { return c.Name == b.Name }) {
			continue
		}
		if !slices.Contains(b.MasterIDs, ms.ID) {
			continue
		}
		if err := st.SetBuilderOnMaster(b.ID, ms.ID, false); err != nil {
			return 0, fmt.Errorf("unregister builder %s: %w", b.Name, err)
		}
	}
	for _, w := range cfg.Workers {
		sw, err := st.EnsureWorker(w.Name)
		if err != nil {
			return 0, fmt.Errorf("register worker %s: %w", w.Name, err)
		}
		// The other masters sharing the store keep theirs.
		if err := st.SetWorkerConfiguredOnMaster(sw.ID, ms.ID, on[w.Name]); err != nil {
			return 0, fmt.Errorf("register worker %s: %w", w.Name, err)
		}
	}
	// Workers no longer in the config are not used by this master any more.
	workers, err := st.Workers()
	if err != nil {
		return 0, fmt.Errorf("list workers: %w", err)
	}
	for _, w := range workers {
		if slices.ContainsFunc(cfg.Workers, func(c config.Worker) bool { return c.Name == w.Name }) {
			continue
		}
		if slices.ContainsFunc(w.ConfiguredOn, func(bm store.BuilderMaster) bool { return bm.MasterID == ms.ID }) {
			if err := st.SetWorkerConfiguredOnMaster(w.ID, ms.ID, nil); err != nil {
				return 0, fmt.Errorf("unregister worker %s: %w", w.Name, err)
			}
		}
	}
	return ms.ID, nil
}

// clearConnections marks every worker disconnected from masterID: no worker
// is connected to a master that is only starting, whatever a crash left in
// the store. Only Run calls it; a reconfig keeps the connections.
func clearConnections(st store.Store, masterID int64) error {
	workers, err := st.Workers()
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	for _, w := range workers {
		if slices.Contains(w.ConnectedTo, masterID) {
			if err := st.WorkerDisconnected(w.ID, masterID); err != nil {
				return fmt.Errorf("reset worker %s: %w", w.Name, err)
			}
		}
	}
	return nil
}

// workerPassword returns the password of the worker called name in the
// current config, and whether it is configured: the worker proves it
// knows it (pkg/protocol's login), and a removed worker is refused.
func (m *Master) workerPassword(name string) (string, bool) {
	return m.workerPasswordFor(name, config.ProtocolGBB)
}

// workerPasswordFor returns the password of worker name when it may log
// in with protocol (its protocol key is unset, or that protocol).
func (m *Master) workerPasswordFor(name, protocol string) (string, bool) {
	m.mu.Lock()
	workers := m.cfg.Workers
	m.mu.Unlock()
	for _, w := range workers {
		if w.Name == name {
			if !w.AcceptsProtocol(protocol) {
				m.log.Warn("worker refused: its protocol key names another protocol", "worker", name, "protocol", protocol, "configured", w.Protocol)
				return "", false
			}
			return w.Password, true
		}
	}
	return "", false
}

// MsgReconfigApplied is what the log says when a reconfig took effect;
// `gbb-master reconfig` waits for it.
const MsgReconfigApplied = "reconfig applied"

// Reconfig loads the config at path and, when it is valid and needs no
// restart, applies it to the running master: builders, workers,
// schedulers and change sources change at once; running builds finish
// with the config they started with. An invalid config changes nothing.
//
// A removed worker is disconnected (its builds end RETRY) and refused when
// it dials again. A removed builder's pending requests stay pending, as in
// buildbot, and run when a builder of that name is configured again. A
// removed or changed poller is cancelled without waiting for it, so one
// stuck in a slow fetch does not hold the reconfig up.
func (m *Master) Reconfig(path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cfg
	var restart []string
	if why := grpcRestart(old.Protocols.GRPC, cfg.Protocols.GRPC); why != "" {
		restart = append(restart, why)
	}
	if cfg.WWW.Addr() != old.WWW.Addr() || cfg.WWW.Limits != old.WWW.Limits || cfg.WWW.IdleTimeout != old.WWW.IdleTimeout ||
		cfg.WWW.TLS.Enabled() != old.WWW.TLS.Enabled() {
		restart = append(restart, "www")
	}
	if !maps.Equal(hookConfigs(cfg.WWW.ChangeHooks), hookConfigs(old.WWW.ChangeHooks)) {
		restart = append(restart, "www.change_hook")
	}
	if cfg.LogFormat != old.LogFormat {
		restart = append(restart, "log_format")
	}
	if cfg.WWW.NoMetrics != old.WWW.NoMetrics {
		restart = append(restart, "www.metrics")
	}
	if cfg.DB.URL != old.DB.URL {
		restart = append(restart, "db.url")
	}
	restart = append(restart, bbRestart(old.Protocols, cfg.Protocols)...)
	if len(restart) > 0 {
		return fmt.Errorf("%s: needs a restart (gbb-master restart); nothing was changed", strings.Join(restart, "; "))
	}
	if m.st == nil {
		m.cfg = cfg // Run applies it once its components are made
		return nil
	}
	// New certificate files (rotation) serve the next connections; the
	// connected workers stay.
	if m.wtls != nil {
		if err := m.wtls.load(cfg.Protocols.GRPC); err != nil {
			return err
		}
	}
	return m.applyLocked(old, cfg)
}

// LoadConfig loads the config at path as the master runs it: parsed and
// validated (config.Load), and every reporter made once and its mail
// templates run on a sample report (reporter.Check), so that a reporter
// that could not run is a config error at checkconfig, start and reconfig.
func LoadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := reporter.Check(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// logWarnings logs what checkconfig warns about in cfg.
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config warning: " + w)
	}
}

// applyLocked makes the running components follow cfg instead of old.
// m.mu must be held, and Run's components made.
func (m *Master) applyLocked(old, cfg *config.Config) error {
	if _, err := m.sync(m.st, cfg); err != nil {
		return fmt.Errorf("reconfig: %w", err)
	}
	sids, err := schedulerIDs(m.st, cfg.Schedulers)
	if err != nil {
		return fmt.Errorf("reconfig: %w", err)
	}
	m.schedIDs = sids
	m.cfg = cfg
	m.engine.SetConfig(cfg.Builders, cfg.Workers)
	// A worker removed from the config is refused from now on (see
	// authenticate); one still connected is disconnected, and its builds
	// end RETRY, as buildbot's reconfig does.
	for _, w := range old.Workers {
		if slices.ContainsFunc(cfg.Workers, func(c config.Worker) bool { return c.Name == w.Name }) {
			continue
		}
		if sw, err := m.st.WorkerByName(w.Name); err == nil {
			m.engine.DisconnectWorker(sw.ID, "removed from the config")
		}
	}
	m.engine.SetLocks(cfg.Locks)
	m.engine.SetLogLimits(cfg.LogMaxSize, cfg.LogMaxTailSize)
	m.engine.SetFinishSteps(cfg.FinishSteps)
	m.engine.SetMasterFiles(cfg.MasterFiles(m.basedir))
	every, leader := splitSchedulers(cfg.Schedulers)
	m.scheds.Reconfigure(every)
	if m.lead != nil {
		m.lead.Reconfigure(leader)
	}
	if m.leadCtx != nil {
		m.pollers.apply(m.leadCtx, cfg.ChangeSources)
	}
	m.web.SetSite(cfg.BuildbotURL, cfg.WWW.TrustedProxies)
	if err := m.reporters.SetConfig(cfg.Reporters, cfg.Workers, cfg.BuildbotURL); err != nil {
		m.log.Error("reconfig: reporters", "err", err)
	}
	m.missing.setWorkers(cfg.Workers)
	m.bbws.notify()
	m.web.SetAccess(cfg.WWW.Auth, cfg.WWW.Authz)
	if err := m.web.SetTLS(cfg.WWW.TLS); err != nil {
		m.log.Error("reconfig: the web certificate in force stays", "err", err)
	}
	logWarnings(m.log, cfg)
	m.log.Info(MsgReconfigApplied, "builders", len(cfg.Builders), "workers", len(cfg.Workers), "schedulers", len(cfg.Schedulers))
	return nil
}

// claimName gives a worker name to a connection that logged in over one of
// the worker ports, unless a connection of that name over another port
// answers within the keepalive timeout (see workerNames.claim); a refusal
// is logged.
func (m *Master) claimName(ctx context.Context, name string, h *nameHolder) bool {
	m.mu.Lock()
	wait := m.cfg.Protocols.GRPC.KeepaliveTimeout
	m.mu.Unlock()
	if err := m.names.claim(ctx, name, h, wait); err != nil {
		m.log.Warn("worker refused: a connection of that name answers", "worker", name, "protocol", h.protocol, "remote", h.remote, "err", err)
		return false
	}
	return true
}
