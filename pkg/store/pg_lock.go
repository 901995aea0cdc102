package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgLockSpace is the first key of the store's advisory locks (the second
// is the lock's name hashed), so they do not collide with other
// applications' locks in the same database.
const pgLockSpace = 0x67626202

// pgLockCheck is how often a held lock's session is checked.
const pgLockCheck = time.Second

// Lock takes a session advisory lock on a connection of its own: the lock
// lasts while that session does, so a master that dies or loses the
// database loses the lock and another takes it.
func (p *PG) Lock(name string) (Lock, bool, error) {
	h := fnv.New32a()
	h.Write([]byte(name))
	key := int32(h.Sum32())
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	cc := p.pool.Config().ConnConfig.Copy()
	if app := p.app.Load(); app != nil {
		cc.RuntimeParams["application_name"] = *app // see ExpireMaster
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", int32(pgLockSpace), key).Scan(&ok); err != nil {
		conn.Close(context.Background())
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if !ok {
		conn.Close(context.Background())
		return nil, false, nil
	}
	wctx, stop := context.WithCancel(context.Background())
	l := &pgLock{conn: conn, key: key, stop: stop, lost: make(chan struct{}), done: make(chan struct{})}
	go l.watch(wctx)
	return l, true, nil
}

// pgLock is a held advisory lock.
type pgLock struct {
	conn *pgx.Conn // used only by watch while it runs, then by Unlock
	key  int32
	stop context.CancelFunc
	once sync.Once
	lost chan struct{}
	done chan struct{} // closed when watch has returned
}

func (l *pgLock) Lost() <-chan struct{} { return l.lost }

// watch pings the lock's session until it fails or Unlock stops it.
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
			l.once.Do(func() { close(l.lost) })
			return
		}
	}
}

// Unlock releases the lock, then ends its session. It unlocks explicitly:
// the server releases a closed session's locks only when its backend has
// exited, after Close returns, and another master trying at once would
// still find it held.
func (l *pgLock) Unlock() error {
	l.stop()
	<-l.done
	l.once.Do(func() { close(l.lost) })
	ctx, cancel := context.WithTimeout(context.Background(), pgLockCheck*5)
	defer cancel()
	_, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", int32(pgLockSpace), l.key)
	if cerr := l.conn.Close(context.Background()); err == nil {
		err = cerr
	}
	return err
}
