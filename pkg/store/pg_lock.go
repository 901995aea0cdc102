package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgLockSpace is the first key of the store's advisory locks (the second
// is the lock's name hashed), so they do not collide with other
// applications' locks in the same database.
const pgLockSpace = 0x67626202

// pgLockCheck is how often a held lock's session is checked.
const pgLockCheck = time.Second

// pgLockEndFor bounds how long a lost lock's session is ended for (see
// end): long enough to outlast a short outage of the database, bounded so
// that Unlock returns.
const pgLockEndFor = time.Minute

// pgLockSession are the settings of a lock's session that make the server
// notice a client that vanished (its host gone, a firewall or NAT dropping
// its packets) within seconds rather than the system's hours, ending the
// session and so freeing the lock for another master: keepalives after 5s
// of silence, every 2s, 3 unanswered end it; data unacknowledged for 15s
// ends it too. The URL's own options for them win.
var pgLockSession = map[string]string{
	"tcp_keepalives_idle":     "5",
	"tcp_keepalives_interval": "2",
	"tcp_keepalives_count":    "3",
	"tcp_user_timeout":        "15000", // ms
}

// Lock takes a session advisory lock on a connection of its own: the lock
// lasts while that session does, so a master that dies or loses the
// database loses the lock and another takes it.
func (p *PG) Lock(name string) (Lock, bool, error) {
	h := fnv.New32a()
	h.Write([]byte(name))
	key := int32(h.Sum32())
	ctx, cancel := p.opCtx()
	defer cancel()
	cfg := p.pool.Config().ConnConfig.Copy()
	for k, v := range pgLockSession {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	if app := p.app.Load(); app != nil {
		cfg.RuntimeParams["application_name"] = *app // see ExpireMaster
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	var ok bool
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), pg_try_advisory_lock($1, $2)", int32(pgLockSpace), key).Scan(&pid, &ok); err != nil {
		conn.Close(context.Background())
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if !ok {
		conn.Close(context.Background())
		return nil, false, nil
	}
	wctx, stop := context.WithCancel(context.Background())
	l := &pgLock{conn: conn, pool: p.pool, store: p, name: name, pid: pid, key: key, stop: stop,
		lost: make(chan struct{}), done: make(chan struct{})}
	go l.watch(wctx)
	return l, true, nil
}

// pgLock is a held advisory lock.
type pgLock struct {
	conn  *pgx.Conn     // used only by watch while it runs, then by Unlock
	pool  *pgxpool.Pool // the store's, to end the lock's session when it is lost
	store *PG           // whose closing bounds Unlock (see SetClosing)
	name  string
	pid   int32 // the lock's session's backend
	key   int32
	stop  context.CancelFunc
	once  sync.Once
	lost  chan struct{}
	done  chan struct{} // closed when watch has returned
	// Set by watch before done is closed, then read by Unlock:
	failed bool // the session stopped answering
	ended  bool // and the server no longer has it holding the lock
}

func (l *pgLock) Lost() <-chan struct{} { return l.lost }

// watch pings the lock's session until it fails or Unlock stops it. When
// it fails, the lock is lost for this master, but the server may still
// hold it for the session (the connection hangs rather than closes: a
// proxy or NAT entry that stopped forwarding keeps the server's side
// open), and no other master could lead: watch ends that session from
// another connection.
func (l *pgLock) watch(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(pgLockCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pgLockCheck*5)
		err := l.conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			l.failed = true
			l.once.Do(func() { close(l.lost) })
			l.ended = l.end(ctx) == nil
			return
		}
	}
}

// end ends the lock's session on the server, from a connection of the
// store's pool, until no session holds the lock there (it is harmless
// when the session is gone already), retrying with backoff until ctx is
// done or pgLockEndFor has passed. Only a backend that holds this lock is
// ended, so a backend pid reused by another session is left alone.
func (l *pgLock) end(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pgLockEndFor)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		qctx, qcancel := context.WithTimeout(ctx, pgLockCheck*5)
		// (count evaluates pg_terminate_backend on each row; EXISTS
		// would not.)
		var held int
		err := l.pool.QueryRow(qctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
			WHERE locktype = 'advisory' AND pid = $1 AND granted
			AND classid = $2::int8::oid AND objid = $3::int8::oid AND objsubid = 2
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			l.pid, int64(uint32(pgLockSpace)), int64(uint32(l.key))).Scan(&held)
		qcancel()
		if err == nil && held == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("its session still holds it")
			}
			return fmt.Errorf("end the session of lost lock %s (backend %d): %w", l.name, l.pid, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// Unlock releases the lock, then ends its session. It unlocks explicitly:
// the server releases a closed session's locks only when its backend has
// exited, after Close returns, and another master trying at once would
// still find it held. When the lock was lost (its session stopped
// answering), Unlock ends the session on the server, as watch began to,
// and returns once no session holds the lock there, or pgLockEndFor
// later; pgClosingTimeout later once the store is closing (the server
// ends a session whose client vanished by itself, see pgLockSession).
func (l *pgLock) Unlock() error {
	l.stop()
	<-l.done
	l.once.Do(func() { close(l.lost) })
	endCtx, endCancel := l.store.bound(context.Background(), pgLockEndFor)
	defer endCancel()
	if l.failed {
		l.conn.Close(context.Background())
		if l.ended {
			return nil
		}
		return l.end(endCtx)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgLockCheck*5)
	defer cancel()
	_, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", int32(pgLockSpace), l.key)
	cerr := l.conn.Close(context.Background())
	if err != nil {
		// The session stopped answering since watch last asked.
		return l.end(endCtx)
	}
	return cerr
}
