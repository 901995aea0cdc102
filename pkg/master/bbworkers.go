package master

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gbb-ci/gbb/pkg/bbworker"
	"github.com/gbb-ci/gbb/pkg/bbworker/msgpack"
	"github.com/gbb-ci/gbb/pkg/bbworker/pb"
	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/config"
)

// attachTimeout bounds buildbot's attach sequence (print, getWorkerInfo,
// setBuilderList) of a buildbot-worker that logged in.
const attachTimeout = 60 * time.Second

// bbServer is a buildbot-worker protocol's server (msgpack.Server,
// pb.Server).
type bbServer interface {
	Serve(net.Listener) error
	Close() error
}

// bbWorkers are the buildbot-workers attached to a running master, so a
// reconfig gives each its new builder list.
type bbWorkers struct {
	mu      sync.Mutex
	changed map[*bbworker.Worker]chan struct{} // guarded by mu; signalled when the builders change
}

// notify tells every attached buildbot-worker's loop that the builders
// changed.
func (b *bbWorkers) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.changed {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// builderList is the builders worker serves in cfg, with their
// directories, for setBuilderList.
func builderList(cfg *config.Config, worker string) []bbworker.Builder {
	var out []bbworker.Builder
	for _, b := range cfg.Builders {
		for _, w := range b.WorkerNames {
			if w == worker {
				out = append(out, bbworker.Builder{Name: b.Name, Dir: b.WorkerDir()})
				break
			}
		}
	}
	return out
}

// bbPassword is the Password of the server of protocol proto: the
// password of a [[workers]] that may log in with it.
func (m *Master) bbPassword(proto string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		return m.workerPasswordFor(name, proto)
	}
}

// bbAttach is the Attach of the server of a buildbot-worker protocol: it
// runs buildbot's attach sequence, gives the worker to the engine, then
// keeps it alive, and its builder list current, until it goes.
func (m *Master) bbAttach(ctx context.Context, engine *build.Engine, bws *bbWorkers) func(bbworker.Conn) {
	return func(c bbworker.Conn) {
		log := m.log.With("worker", c.Name(), "protocol", c.Protocol(), "remote", c.Remote())
		if !m.claimName(ctx, c.Name(), &nameHolder{
			protocol: c.Protocol(),
			remote:   c.Remote(),
			alive: func(ctx context.Context) bool {
				return c.Print(ctx, "master got a duplicate connection") == nil
			},
			drop: func(error) { c.Close() },
			done: c.Done(),
		}) {
			c.Close()
			return
		}
		m.mu.Lock()
		cfg := m.cfg
		m.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, attachTimeout)
		w, err := bbworker.Attach(actx, c, bbworker.Config{
			Builders: builderList(cfg, c.Name()),
			CurrentBuilders: func() []bbworker.Builder {
				m.mu.Lock()
				defer m.mu.Unlock()
				return builderList(m.cfg, c.Name())
			},
			KeepaliveInterval: cfg.Protocols.GRPC.KeepaliveInterval,
			KeepaliveTimeout:  cfg.Protocols.GRPC.KeepaliveTimeout,
			Logger:            m.log,
		})
		cancel()
		if err != nil {
			log.Warn("buildbot-worker attach failed", "err", err)
			c.Close()
			return
		}
		log.Info("buildbot-worker attached", "version", w.Info().Version, "host", w.Info().Host)
		changed := make(chan struct{}, 1)
		bws.mu.Lock()
		bws.changed[w] = changed
		bws.mu.Unlock()
		defer func() {
			bws.mu.Lock()
			delete(bws.changed, w)
			bws.mu.Unlock()
		}()
		engine.Attach(w)

		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { w.KeepAlive(gctx); return nil })
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-w.Done():
					return nil
				case <-changed:
				}
				m.mu.Lock()
				cfg := m.cfg
				m.mu.Unlock()
				sctx, cancel := context.WithTimeout(gctx, attachTimeout)
				err := w.SetBuilders(sctx, builderList(cfg, w.Name()))
				cancel()
				if err != nil {
					log.Warn("setBuilderList after reconfig", "err", err)
				}
			}
		})
		_ = g.Wait()
		if ctx.Err() != nil {
			w.Close(errors.New("master stopping"))
		}
	}
}

// bbListeners listens on the enabled buildbot-worker ports of cfg.
type bbListener struct {
	name string // "pb" or "msgpack"
	ln   net.Listener
	srv  bbServer
}

// listenBB opens the buildbot-worker ports cfg enables and makes their
// servers; the caller closes the listeners.
func (m *Master) listenBB(ctx context.Context, cfg *config.Config, engine *build.Engine, bws *bbWorkers) ([]bbListener, error) {
	var out []bbListener
	if p := cfg.Protocols.PB; p.Enabled {
		ln, err := listen("pb port", p.Addr(), p.Limits, bbShare, bbMin, bbMax, true, m.log)
		if err != nil {
			return nil, err
		}
		out = append(out, bbListener{name: config.ProtocolPB, ln: ln, srv: &pb.Server{
			Password: m.bbPassword(config.ProtocolPB),
			Attach:   m.bbAttach(ctx, engine, bws),
			Logger:   m.log.With("port", "pb"),
		}})
	}
	if p := cfg.Protocols.Msgpack; p.Enabled {
		ln, err := listen("msgpack port", p.Addr(), p.Limits, bbShare, bbMin, bbMax, true, m.log)
		if err != nil {
			return nil, err
		}
		out = append(out, bbListener{name: config.ProtocolMsgpack, ln: ln, srv: &msgpack.Server{
			Password: m.bbPassword(config.ProtocolMsgpack),
			Attach:   m.bbAttach(ctx, engine, bws),
			Logger:   m.log.With("port", "msgpack"),
		}})
	}
	return out, nil
}

// serveBB serves l until ctx is done.
func serveBB(ctx context.Context, l bbListener, log *slog.Logger) error {
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stopped)
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		if err := l.srv.Close(); err != nil {
			log.Error("close the "+l.name+" port", "err", err)
		}
	})
	err := l.srv.Serve(l.ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// bbRestart says which buildbot-worker ports need a restart to go from
// old to cfg: turning one on or off, or moving it (as the gRPC port).
func bbRestart(old, cfg config.Protocols) []string {
	var out []string
	for _, p := range []struct {
		name     string
		old, cfg config.BBProtocol
	}{{"protocols.pb", old.PB, cfg.PB}, {"protocols.msgpack", old.Msgpack, cfg.Msgpack}} {
		p.old.Line, p.cfg.Line = 0, 0
		if p.old != p.cfg {
			out = append(out, p.name+" (turning it on or off, its port, interface or limits)")
		}
	}
	return out
}
