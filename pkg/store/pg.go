package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/zstd"
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

	events Publisher  // nil means none
	pubMu  sync.Mutex // orders this master's commits and their publication
	origin string     // this store's random id, on its notifications

	outbox atomic.Pointer[func()] // see SetOutbox; nil: off

	onCommit func(time.Duration)
	onLog    func(int)

	stop     context.CancelFunc // stops the listener
	listened chan struct{}      // closed when the listener has ended
	bigSent  atomic.Int64       // events sent through pg_events, to prune it now and then
}

// IsPostgresURL says whether url names a PostgreSQL database.
func IsPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// OpenURL opens the store url names: "postgres://…" or "postgresql://…"
// for PostgreSQL, "bbolt:PATH" or a bare PATH for bbolt (relative to
// basedir).
func OpenURL(url, basedir string, opts Options) (Store, error) {
	if IsPostgresURL(url) {
		return OpenPG(url, opts)
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
	safe := redactURL(url)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
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
		listened: make(chan struct{})}
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

// Close stops listening and closes the connections.
func (p *PG) Close() error {
	p.stop()
	<-p.listened
	p.pool.Close()
	p.enc.Close()
	p.dec.Close()
	return nil
}

// redactURL returns url with its password, in the user part or the
// query, replaced by "xxxxx".
func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
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

// update runs fn in a write transaction and, once it has committed, calls
// publish (when events are published) before any other write of this
// master commits; so events leave in commit order, never for a write that
// failed. publish also runs inside the transaction (with a eventBuffer), so
// that the events are sent to the other masters by NOTIFY, which
// PostgreSQL delivers at commit. fn may run more than once (a deadlock or
// serialization failure rolls it back): it must set, not accumulate, what
// it captures.
func (p *PG) update(fn func(ctx context.Context, tx pgx.Tx) error, publish func(emit)) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := p.tryUpdate(ctx, fn, publish)
		if err == nil || !retryable(err) || attempt >= 20 || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
}

func (p *PG) tryUpdate(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error, publish func(emit)) error {
	start := time.Now()
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := fn(ctx, tx); err != nil {
		return err
	}
	var rec eventBuffer
	if publish != nil && p.events != nil {
		publish(emit{&rec})
		if err := p.notify(ctx, tx, rec); err != nil {
			return err
		}
	}
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if p.onCommit != nil {
		p.onCommit(time.Since(start))
	}
	for _, e := range rec {
		p.events.Publish(e.key, e.record)
	}
	return nil
}

// read runs fn in a read-only transaction that sees one snapshot.
func (p *PG) read(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
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

// pgJSON is v's JSON, for a data column.
func pgJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as bbolt's put: a property's "<me>" stays so
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err)) // records always marshal
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
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
	err := p.pool.QueryRow(context.Background(), "SELECT pg_database_size(current_database())").Scan(&n)
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
