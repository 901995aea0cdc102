package master

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// workerNames arbitrates worker names across the master's worker ports
// (gbb's gRPC port, PB, msgpack): a name is connected over one of them at
// a time. Each port arbitrates its own duplicates first; this catches a
// second login of a name that is connected over another port, which a
// port alone cannot see.
type workerNames struct {
	mu   sync.Mutex
	held map[string]*nameHolder // guarded by mu; a holder whose done is closed holds nothing
}

// nameHolder is one connection holding a worker name.
type nameHolder struct {
	protocol string // "gbb", "pb" or "msgpack"
	remote   string
	// alive asks the connection for an answer within ctx (a print for a
	// buildbot-worker, as buildbot's WorkerManager.newConnection does; a
	// ping for a gbb-worker).
	alive func(ctx context.Context) bool
	// drop closes the connection: the socket, not only our use of it.
	drop func(reason error)
	done <-chan struct{}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// claim gives name to h, as buildbot does with a duplicate connection:
// when another connection holds it and answers within wait, h is refused
// (the error says by whom); when it does not answer, it is dropped and
// h takes its place.
func (n *workerNames) claim(ctx context.Context, name string, h *nameHolder, wait time.Duration) error {
	for {
		n.mu.Lock()
		if n.held == nil {
			n.held = make(map[string]*nameHolder)
		}
		old := n.held[name]
		if old == nil || old == h || closed(old.done) {
			n.held[name] = h
			n.mu.Unlock()
			return nil
		}
		n.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, wait)
		alive := old.alive(pctx)
		cancel()
		if alive {
			return fmt.Errorf("worker %q is connected over %s from %s, and it answers", name, old.protocol, old.remote)
		}
		old.drop(fmt.Errorf("replaced by a new %s connection from %s: this one did not answer within %s", h.protocol, h.remote, wait))
		select {
		case <-old.done:
		case <-h.done:
			return fmt.Errorf("worker %q: the new connection went while the old one closed", name)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
