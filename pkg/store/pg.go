package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/zstd"

	"github.com/gbb-ci/gbb/pkg/config"
)

// PG is the master's store on PostgreSQL, which several masters may share:
// it is both their store and their message bus. Every record is a row
// whose data column holds the record's JSON (the same JSON as the bbolt
// store's), beside the columns its queries filter and sort on; log lines are
// zstd-compressed chunks as on bbolt. Writes run in transactions that may
// run concurrently (row locks order them; a serialization failure or
// deadlock reruns the transaction); their events are published on this
// master in commit order and sent to the other masters with NOTIFY, whose
// events PG publishes on this master's bus as they arrive.
type PG struct {
	url  string // without password, for messages
	pool *pgxpool.Pool
	log  *slog.Logger
	enc  *zstd.Encoder
	dec  *zstd.Decoder

	events Publisher // nil means none
	order  sequencer // orders the publication of commits, this master's and others'
	origin string    // this store's random id, on its notifications

	outbox  atomic.Pointer[func()]        // see SetOutbox; nil: off
	control atomic.Pointer[func(Control)] // see SetControl; nil: none

	onCommit func(time.Duration)
	onLog    func(int)

	// app is the application_name of this store's sessions: "gbb-master
	// N ORIGIN" (pgAppName) once the store's master (the first
	// EnsureMaster) is known, so that ExpireMaster can end a hung master's
	// sessions. Empty until then.
	app    *atomic.Pointer[string] // shared with the pool's PrepareConn
	selfID atomic.Int64            // the store's master's id; 0 until known

	// ignored counts the notifications the listener ignored since it
	// last logged so, at ignoredLog (see untrusted); the listener's own.
	ignored    int
	ignoredLog time.Time

	// closing is done once the store's master is stopping (see
	// SetClosing); endClosing makes it so.
	closing    context.Context
	endClosing context.CancelFunc
	gone       atomic.Bool // a call gave up while closing (see bound)
	conns      *pgConns    // every connection of the store's, see Close

	stop     context.CancelFunc // stops the listener
	listened chan struct{}      // closed when the listener has ended
	bigSent  atomic.Int64       // events sent through pg_events, to prune it now and then
}

// OpenURL opens the store url names: "postgres://…" or "postgresql://…"
// for PostgreSQL, "bbolt:PATH" or a bare PATH for bbolt (relative to
// basedir).
func OpenURL(url, basedir string, opts Options) (Store, error) {
	if config.IsPostgresURL(url) {
		return OpenPG(url, opts)
	}
	if libpqKeywords(url) {
		return nil, errors.New(`open store: a libpq "key=value" string is not taken (nor shown: it may hold a password): write the database as postgresql://USER@HOST:PORT/DATABASE`)
	}
	p := strings.TrimPrefix(url, "bbolt:")
	if !filepath.IsAbs(p) {
		p = filepath.Join(basedir, p)
	}
	db, err := Open(p, opts)
	if err != nil {
		return nil, err // not a Store holding a nil *DB
	}
	return db, nil
}

// libpqKeywords says whether s looks like a libpq keyword string
// ("host=… dbname=…"), which would otherwise be taken for a file name.
func libpqKeywords(s string) bool {
	for _, k := range []string{"host=", "hostaddr=", "dbname=", "user=", "port=", "password=", "sslmode="} {
		if strings.HasPrefix(s, k) || strings.Contains(s, " "+k) {
			return true
		}
	}
	return false
}

// pgTimeout bounds each statement, so a lost database fails a write
// rather than hanging the master.
const pgTimeout = 30 * time.Second

// OpenPG connects to the PostgreSQL database url and brings its schema up
// to date (see migrate).
func OpenPG(url string, opts Options) (*PG, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open store: bad PostgreSQL URL: %w", redactErr(err))
	}
	safe := config.RedactDBURL(url)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conns := &pgConns{open: map[*pgConn]struct{}{}}
	cfg.ConnConfig.DialFunc = conns.dialer(cfg.ConnConfig.DialFunc)
	var app atomic.Pointer[string]
	cfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		// A session that cannot be named (ended, say) is dropped, and
		// the statement runs on another.
		return pgSetApp(ctx, c, app.Load()) == nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", safe, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", safe, err)
	}
	if err := migrate(ctx, pool, logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", safe, err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(chunkWindow))
	if err != nil {
		pool.Close()
		return nil, err
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		enc.Close()
		pool.Close()
		return nil, err
	}
	var id [8]byte
	rand.Read(id[:])
	p := &PG{url: safe, pool: pool, log: logger, enc: enc, dec: dec, events: opts.Events,
		origin: hex.EncodeToString(id[:]), onCommit: opts.OnCommit, onLog: opts.OnLog,
		listened: make(chan struct{}), app: &app, conns: conns}
	p.closing, p.endClosing = context.WithCancel(context.Background())
	p.order.cond.L = &p.order.mu
	lctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	if p.events != nil {
		ready := make(chan error, 1)
		go p.listen(lctx, ready)
		if err := <-ready; err != nil {
			stop()
			<-p.listened
			p.Close()
			return nil, fmt.Errorf("open store %s: listen for other masters' events: %w", safe, err)
		}
	} else {
		close(p.listened)
	}
	logger.Debug("store opened", "url", safe)
	return p, nil
}

// Close stops listening and closes the connections. It is closing (see
// SetClosing) from its start: a statement still running is given up
// pgClosingTimeout later. Connections whose closing the database does not
// answer (pgx waits up to 15s for it to acknowledge a cancelled
// statement) are cut pgClosingTimeout later, or at once when the database
// is gone already (see bound).
func (p *PG) Close() error {
	p.SetClosing()
	p.stop()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		<-p.listened
		p.pool.Close()
	}()
	wait := pgClosingTimeout
	if p.gone.Load() {
		wait = 0
	}
	select {
	case <-closed:
	case <-time.After(wait):
		if n := p.conns.cut(); n > 0 {
			p.log.Warn("closed the store's connections without waiting for the database", "connections", n)
		}
		<-closed
	}
	p.enc.Close()
	p.dec.Close()
	return nil
}

// pgConns are a store's network connections to the database, so that
// Close can cut them when the database does not answer.
type pgConns struct {
	mu   sync.Mutex
	open map[*pgConn]struct{} // guarded by mu
	shut bool                 // guarded by mu; cut was called: no new connection
}

// pgConn is a connection of a pgConns.
type pgConn struct {
	net.Conn
	of   *pgConns
	once sync.Once
}

func (c *pgConn) Close() error {
	c.once.Do(func() {
		c.of.mu.Lock()
		delete(c.of.open, c)
		c.of.mu.Unlock()
	})
	return c.Conn.Close()
}

// dialer wraps dial so that the connections it makes are c's.
func (c *pgConns) dialer(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.shut {
			conn.Close()
			return nil, errors.New("store closed")
		}
		pc := &pgConn{Conn: conn, of: c}
		c.open[pc] = struct{}{}
		return pc, nil
	}
}

// cut closes every connection, and makes the dialer refuse new ones; it
// returns how many were open.
func (c *pgConns) cut() int {
	c.mu.Lock()
	c.shut = true
	open := make([]*pgConn, 0, len(c.open))
	for pc := range c.open {
		open = append(open, pc)
	}
	c.mu.Unlock()
	for _, pc := range open {
		pc.Close()
	}
	return len(open)
}

// redactErr drops the text of a URL parse error, which pgx may quote with
// the password in it.
func redactErr(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if inner := pe.Unwrap(); inner != nil {
			return fmt.Errorf("cannot parse it: %v", inner)
		}
		return errors.New("cannot parse it")
	}
	return err
}

// pgTx is what the helpers below read and write through: a transaction or
// the pool itself.
type pgTx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// retryable says whether err is a serialization failure or a deadlock,
// after which the transaction runs again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// connectionLost says whether err is the database going away or not
// taking connections (a restart, a failover, the network): class 08
// (connection exception), 57P01-57P03 (shutdown, cannot connect now), or
// a connection that failed or broke before the server answered.
func connectionLost(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true // whatever the server said, no transaction began
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return pgconn.SafeToRetry(err) || (!pgconn.Timeout(err) && isNetErr(err))
}

// isNetErr says whether err comes from the connection itself (reset,
// refused, closed) rather than from the server's answer.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// pgClosingTimeout bounds each statement, and each call's retries, once
// the store is closing (see SetClosing): long enough for a database that
// answers, however loaded, short enough that a master cut off from its
// database stops within seconds. Once a call has given up so, the
// database is taken for gone and the calls after it are bounded by
// pgGoneTimeout: a master stopping makes several in turn.
const (
	pgClosingTimeout = 5 * time.Second
	pgGoneTimeout    = time.Second
)

// errNoAnswer is the cause of a call given up while closing.
var errNoAnswer = errors.New("the database did not answer while this master stops")

// SetClosing tells the store that its master is stopping: from now on a
// call that the database does not answer fails pgClosingTimeout after it
// began (or after SetClosing, for one already running) rather than
// waiting out an outage (pgOutage) and the statement timeout (pgTimeout):
// a master cut off from its database (a firewall dropping its packets)
// stops within seconds rather than minutes, and the other masters presume
// it dead as usual. A database that answers still gets every write.
// SetClosing may be called more than once, from any goroutine.
func (p *PG) SetClosing() { p.endClosing() }

// isClosing says whether SetClosing was called.
func (p *PG) isClosing() bool { return p.closing.Err() != nil }

// closingTimeout is how long a call may take from now once closing.
func (p *PG) closingTimeout() time.Duration {
	if p.gone.Load() {
		return pgGoneTimeout
	}
	return pgClosingTimeout
}

// opCtx bounds a statement run outside update and read: pgTimeout, or
// pgClosingTimeout once the store is closing.
func (p *PG) opCtx() (context.Context, context.CancelFunc) {
	return p.bound(context.Background(), pgTimeout)
}

// bound is parent with a timeout of d, shortened once the store is
// closing to closingTimeout: from its start if it is already, else from
// the moment it becomes so. A context that ended so has errNoAnswer as
// its cause, and marks the database gone.
func (p *PG) bound(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if p.isClosing() {
		ctx, cancel := context.WithTimeoutCause(parent, min(d, p.closingTimeout()), errNoAnswer)
		return ctx, func() { p.noteGone(ctx); cancel() }
	}
	// A timeout of d is the deadline's, as before closing: pgx tells it
	// from a connection lost (see connectionLost).
	timed, cancelTimed := context.WithTimeout(parent, d)
	ctx, cancel := context.WithCancelCause(timed)
	var mu sync.Mutex
	var timer *time.Timer
	ended := false
	stop := context.AfterFunc(p.closing, func() {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			timer = time.AfterFunc(p.closingTimeout(), func() { cancel(errNoAnswer) })
		}
	})
	return ctx, func() {
		stop()
		mu.Lock()
		ended = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		p.noteGone(ctx)
		cancel(context.Canceled)
		cancelTimed()
	}
}

// explain says why err, a context's end, happened when the store gave up
// on the database while closing.
func (p *PG) explain(err error) error {
	if err != nil && p.gone.Load() && !errors.Is(err, errNoAnswer) &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("%w (%w)", err, errNoAnswer)
	}
	return err
}

// noteGone marks the database gone when ctx was given up while closing.
func (p *PG) noteGone(ctx context.Context) {
	if errors.Is(context.Cause(ctx), errNoAnswer) && !p.gone.Swap(true) {
		p.log.Warn("the database does not answer while this master stops; giving up on it within seconds", "timeout", pgClosingTimeout)
	}
}

// pgOutage bounds how long a write waits for a database that went away
// (a restart takes about a second; a failover longer) before it fails.
const pgOutage = 25 * time.Second

// update runs fn in a write transaction and, once it has committed, calls
// publish (when events are published), in turn with this master's other
// writes and the other masters' events: a write that waited for another's
// rows publishes after it, and nothing is published for a write that
// failed. publish also runs inside the transaction (with a eventBuffer), so
// that the events are sent to the other masters by NOTIFY, which
// PostgreSQL delivers at commit. fn may run more than once (a deadlock or
// serialization failure rolls it back): it must set, not accumulate, what
// it captures.
//
// A write that fails because the database went away before its commit
// was sent (its transaction then never happened) runs again, with
// backoff, for up to pgOutage: a database restart does not fail the
// builds writing to it. A commit whose answer was lost is not rerun: it
// may have happened.
func (p *PG) update(fn func(ctx context.Context, tx pgx.Tx) error, publish func(emit)) (err error) {
	defer func() { err = p.explain(err) }()
	ctx, cancel := p.bound(context.Background(), pgTimeout+pgOutage)
	defer cancel()
	var outageSince time.Time
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var committing bool
		committing, err = p.tryUpdate(ctx, fn, publish)
		var be beginError
		switch {
		case err == nil || ctx.Err() != nil:
			return err
		case errors.As(err, &be) && attempt < 20:
			// The pooled session was ended (another master expired
			// this one, see ExpireMaster, or the server restarted):
			// nothing ran, try on another connection at once.
			err = be.err
		case retryable(err) && attempt < 20:
			time.Sleep(time.Duration(attempt+1) * time.Millisecond)
		case connectionLost(err) && (!committing || pgconn.SafeToRetry(err)):
			if p.isClosing() {
				return err // stopping: no waiting for the database
			}
			if outageSince.IsZero() {
				outageSince = time.Now()
				p.log.Warn("lost the database; retrying the write", "err", err)
			}
			if time.Since(outageSince) > pgOutage {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-p.closing.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
		default:
			return err
		}
	}
}

// tryUpdate is one attempt of update; committing says whether err came
// from the commit itself.
func (p *PG) tryUpdate(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error, publish func(emit)) (committing bool, err error) {
	start := time.Now()
	stmt, cancel := p.bound(ctx, pgTimeout)
	defer cancel()
	tx, err := p.pool.BeginTx(stmt, pgx.TxOptions{})
	if err != nil {
		return false, beginError{err}
	}
	defer tx.Rollback(context.Background())
	if err := fn(stmt, tx); err != nil {
		return false, err
	}
	var rec eventBuffer
	if publish != nil && p.events != nil {
		publish(emit{&rec})
		if err := p.notify(stmt, tx, rec); err != nil {
			return false, err
		}
	}
	// The ticket is taken after the transaction's last statement: a
	// transaction that waited for this one's row locks takes its ticket
	// after this one has committed, so it publishes after it. Publication
	// waits for its turn with the transaction over and its connection back
	// in the pool: a publisher may read the store (the metrics do), and
	// must not wait for a connection that a transaction waiting for its
	// turn holds.
	t := p.order.ticket()
	err = tx.Commit(stmt)
	p.order.wait(t)
	defer p.order.done()
	if err != nil {
		return true, err
	}
	if p.onCommit != nil {
		p.onCommit(time.Since(start))
	}
	for _, e := range rec {
		p.events.Publish(e.key, e.record)
	}
	return true, nil
}

// beginError is a transaction that could not begin: nothing of it ran.
type beginError struct{ err error }

func (e beginError) Error() string { return e.err.Error() }

func (e beginError) Unwrap() error { return e.err }

// sequencer hands out tickets and lets their holders through one at a
// time, in ticket order.
type sequencer struct {
	mu   sync.Mutex
	cond sync.Cond // on mu; signalled when turn moves
	next uint64    // guarded by mu; the next ticket handed out
	turn uint64    // guarded by mu; the ticket whose turn it is
}

// ticket returns the next ticket.
func (s *sequencer) ticket() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.next
	s.next++
	return t
}

// wait returns once it is t's turn. Every ticket must be waited for and
// then done, or those after it wait for ever.
func (s *sequencer) wait(t uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.turn != t {
		s.cond.Wait()
	}
}

// done ends the current turn.
func (s *sequencer) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.turn++
	s.cond.Broadcast()
}

// read runs fn in a read-only transaction that sees one snapshot. It
// runs again while the database is away, for up to pgOutage.
func (p *PG) read(fn func(ctx context.Context, tx pgx.Tx) error) error {
	_, err := pgRetryRead(p, func() (struct{}, error) { return struct{}{}, p.tryRead(fn) })
	return p.explain(err)
}

// pgRetryRead runs the read fn again while the database is away, for up
// to pgOutage, unless p is closing (see SetClosing).
func pgRetryRead[T any](p *PG, fn func() (T, error)) (T, error) {
	var outageSince time.Time
	wait := 50 * time.Millisecond
	for {
		v, err := fn()
		if err == nil || !connectionLost(err) || p.isClosing() {
			return v, err
		}
		if outageSince.IsZero() {
			outageSince = time.Now()
		}
		if time.Since(outageSince) > pgOutage {
			return v, err
		}
		select {
		case <-p.closing.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (p *PG) tryRead(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := p.opCtx()
	defer cancel()
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Ping checks that the database answers, for the master's readiness.
func (p *PG) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store %s: %w", p.url, err)
	}
	return nil
}

// pgGet reads the record id of table (whose data column is its JSON),
// locking its row when forUpdate. A missing row is ErrNotFound.
func pgGet[T any](ctx context.Context, q pgTx, table string, id int64, forUpdate bool) (T, error) {
	var v T
	sql := "SELECT data FROM " + table + " WHERE id = $1"
	if forUpdate {
		sql += " FOR UPDATE"
	}
	var data []byte
	if err := q.QueryRow(ctx, sql, id).Scan(&data); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return v, fmt.Errorf("%s %d: %w", strings.TrimSuffix(table, "s"), id, ErrNotFound)
		}
		return v, err
	}
	return v, json.Unmarshal(data, &v)
}

// pgList reads the records a query returns, whose only column is data.
func pgList[T any](ctx context.Context, q pgTx, sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var out []T
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			rows.Close()
			return nil, err
		}
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// pgJSON is v's JSON, for a data column: an argument of a statement,
// marshalled when the statement is sent. A value that does not marshal (a
// time outside JSON's years 0 to 9999, say) is the statement's error,
// never a panic: the transaction fails and rolls back, the caller says
// why.
func pgJSON(v any) pgJSONArg { return pgJSONArg{v} }

// pgJSONArg is a value sent as its JSON (see pgJSON).
type pgJSONArg struct{ v any }

// GoString keeps an error about the argument short: pgx's names the
// value with %#v, which would print the whole record.
func (a pgJSONArg) GoString() string { return fmt.Sprintf("the JSON of a %T", a.v) }

// Value is the JSON, for pgx.
func (a pgJSONArg) Value() (driver.Value, error) { return pgJSONBytes(a.v) }

// pgJSONBytes is v's JSON, as bbolt's put writes it.
func pgJSONBytes(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as bbolt's put: a property's "<me>" stays so
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("store: marshal %T: %w", v, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// nextIDs reserves n ids of table's sequence (table_id_seq), in order.
func nextIDs(ctx context.Context, q pgTx, table string, n int) ([]int64, error) {
	rows, err := q.Query(ctx, "SELECT nextval($1::regclass) FROM generate_series(1, $2)", table+"_id_seq", n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// SetOutbox is [DB.SetOutbox].
func (p *PG) SetOutbox(notify func()) {
	if notify == nil {
		p.outbox.Store(nil)
		return
	}
	p.outbox.Store(&notify)
}

func (p *PG) outboxOn() bool { return p.outbox.Load() != nil }

func (p *PG) notifyOutbox() {
	if f := p.outbox.Load(); f != nil {
		(*f)()
	}
}

// Size is the database's size in bytes.
func (p *PG) Size() (int64, error) {
	var n int64
	ctx, cancel := p.opCtx()
	defer cancel()
	err := p.pool.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
	return n, err
}

// pgChecks are the invariant checks Check runs: what the schema's keys do
// not already guarantee.
var pgChecks = []func(ctx context.Context, tx pgx.Tx) []error{
	pgCheckNamed, pgCheckChanges, pgCheckBuildsets, pgCheckRequests, pgCheckBuilds,
}

// Check verifies the store's invariants in one snapshot.
func (p *PG) Check() error {
	var errs []error
	err := p.read(func(ctx context.Context, tx pgx.Tx) error {
		for _, c := range pgChecks {
			errs = append(errs, c(ctx, tx)...)
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}
