package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	bolt "go.etcd.io/bbolt"

	"github.com/gbb-ci/gbb/pkg/config"
)

// CopyDB copies a whole store, bbolt or PostgreSQL, into another, keeping
// every id: buildbot's copy-db. Records move as they are stored (the JSON
// of each record, log chunks still compressed); the target's indexes are
// made from them. The copy runs kind by kind in a fixed order (the order
// of copyKinds: masters first, deliveries last), each kind in key order, in
// batches of CopyOptions.BatchRows rows, each batch one committed
// transaction. So at any moment the target holds every row of the kinds
// before one kind, a prefix (in key order) of that kind's rows, and none of
// the later kinds': a copy stopped anywhere (kill -9 included) is resumed
// by running it again, which checks that the target is such a prefix of
// the source and goes on after the highest key each kind has in the
// target. A target holding anything else is refused. At the end the
// target's id sequences are set to the source's (so new ids continue after
// every id the source ever gave, deleted ones included), its derived
// indexes and counts are made, it must pass its Check, and the rows of
// each kind are counted on both sides: any difference is an error.
func CopyDB(ctx context.Context, from, to string, opts CopyOptions) (CopyReport, error) {
	if opts.BatchRows <= 0 {
		opts.BatchRows = 500
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	var rep CopyReport
	same, err := sameStore(from, to, opts.BaseDir)
	if err != nil {
		return rep, err
	}
	if same {
		return rep, fmt.Errorf("copy-db: %s and %s are the same store", config.RedactDBURL(from), config.RedactDBURL(to))
	}
	src, err := openCopySide(from, opts.BaseDir, true)
	if err != nil {
		return rep, fmt.Errorf("copy-db: source: %w", err)
	}
	defer src.close()
	// A source in use is refused before the target is opened, which
	// would create a new bbolt file for nothing.
	if !opts.Force {
		if err := src.refuseActive(ctx); err != nil {
			return rep, fmt.Errorf("copy-db: source %s: %w", src.name(), err)
		}
	}
	// What PostgreSQL cannot hold is refused before anything is copied.
	if bs, ok := src.(*boltSide); ok && config.IsPostgresURL(to) {
		if err := bs.refuseForPG(); err != nil {
			return rep, fmt.Errorf("copy-db: source %s: %w", src.name(), err)
		}
	}
	dst, err := openCopySide(to, opts.BaseDir, false)
	if err != nil {
		return rep, fmt.Errorf("copy-db: target: %w", err)
	}
	defer dst.close()
	unlock, err := dst.exclusive()
	if err != nil {
		return rep, fmt.Errorf("copy-db: target %s: %w", dst.name(), err)
	}
	defer unlock()
	// One database may have many URLs (127.0.0.1 and localhost, a
	// socket, another user): it is known by a mark put in it.
	if sp, ok := src.(*pgSide); ok {
		if dp, ok := dst.(*pgSide); ok {
			same, err := samePG(ctx, sp.p, dp.p)
			if err != nil {
				return rep, fmt.Errorf("copy-db: target %s: %w", dst.name(), err)
			}
			if same {
				return rep, fmt.Errorf("copy-db: %s and %s are the same store", config.RedactDBURL(from), config.RedactDBURL(to))
			}
		}
	}
	if !opts.Force {
		if err := dst.refuseActive(ctx); err != nil {
			return rep, fmt.Errorf("copy-db: target %s: %w", dst.name(), err)
		}
	}
	start, err := resumePoints(ctx, src, dst)
	if err != nil {
		return rep, fmt.Errorf("copy-db: target %s: %w", dst.name(), err)
	}
	for i, k := range copyKinds {
		n, err := copyKind(ctx, src, dst, k, start[i], opts)
		rep.Copied += n
		if err != nil {
			return rep, fmt.Errorf("copy-db: %s: %w", k.name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("copy-db: %w", err)
	}
	seqs := map[string]int64{}
	for _, k := range copyKinds {
		if k.seq == "" {
			continue
		}
		n, err := src.seq(ctx, k)
		if err != nil {
			return rep, fmt.Errorf("copy-db: %s sequence: %w", k.name, err)
		}
		seqs[k.name] = n
	}
	if err := dst.finish(ctx, src, seqs); err != nil {
		return rep, fmt.Errorf("copy-db: finish %s: %w", dst.name(), err)
	}
	if err := dst.check(); err != nil {
		return rep, fmt.Errorf("copy-db: the copy in %s fails its check: %w", dst.name(), err)
	}
	var mismatch []string
	for _, k := range copyKinds {
		ns, err := src.count(ctx, k, nil)
		if err != nil {
			return rep, fmt.Errorf("copy-db: count %s: %w", k.name, err)
		}
		nt, err := dst.count(ctx, k, nil)
		if err != nil {
			return rep, fmt.Errorf("copy-db: count %s: %w", k.name, err)
		}
		rep.Counts = append(rep.Counts, CopyCount{Kind: k.name, Source: ns, Target: nt})
		if ns != nt {
			mismatch = append(mismatch, fmt.Sprintf("%s: %d in the source, %d in the target", k.name, ns, nt))
		}
	}
	rep.print(opts.Out)
	if mismatch != nil {
		return rep, fmt.Errorf("copy-db: the counts differ: %s", strings.Join(mismatch, "; "))
	}
	return rep, nil
}

// CopyOptions configures CopyDB.
type CopyOptions struct {
	// BaseDir is what relative bbolt paths are relative to.
	BaseDir string
	// Force copies even while a master is active on a PostgreSQL source
	// or target (its row active and seen within ActiveWindow).
	Force bool
	// BatchRows is the most rows of one transaction; zero means 500.
	// Log chunks also stop a batch at copyBatchBytes.
	BatchRows int
	// Out receives the progress and the counts; nil means none.
	Out io.Writer
	// Progress, when set, is called after each batch has committed, with
	// the kind and how many of its rows the target holds now.
	Progress func(kind string, rows int64)
}

// CopyReport says what CopyDB did.
type CopyReport struct {
	Copied int64       // rows written by this run (a resumed run counts its own)
	Counts []CopyCount // per kind, after the copy
}

// CopyCount is the rows of one kind in the source and the target.
type CopyCount struct {
	Kind           string
	Source, Target int64
}

func (r CopyReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tsource\ttarget\t")
	for _, c := range r.Counts {
		mark := ""
		if c.Source != c.Target {
			mark = "  MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", c.Kind, c.Source, c.Target, mark)
	}
	tw.Flush()
}

// ActiveWindow is how recently a master must have been seen to count as
// running, for CopyDB's refusal.
const ActiveWindow = time.Minute

// copyBatchBytes bounds the bytes of one batch (log chunks are up to
// about 1 MiB each).
const copyBatchBytes = 8 << 20

// copyRow is one record as bbolt stores it: its key in the kind's bucket
// and its value. Every side converts to and from this form.
type copyRow struct{ k, v []byte }

// copyKindDef is one kind of record: its bbolt bucket, its PostgreSQL
// table, and how each side reads and writes it.
type copyKindDef struct {
	name   string
	bucket string // bbolt bucket of the records
	seq    string // PostgreSQL sequence of its ids ("" for none); bbolt: the bucket's
	json   bool   // values are JSON (compared decoded)
	table  string
	// keyCols are the key's columns as the ORDER BY and comparisons use
	// them (text in bytewise order, as bbolt's keys); selCols are what
	// scan reads after them.
	keyCols []string
	selCols string
	// keyArgs turns a bbolt key into the key columns' values.
	keyArgs func(k []byte) []any
	scan    func(rows pgx.Rows) (copyRow, error)
	// put writes a row into PostgreSQL; index writes bbolt's index
	// entries of a row (its record is written by the caller).
	put   func(ctx context.Context, q pgTx, r copyRow) error
	index func(tx *bolt.Tx, r copyRow) error
}

func idArgs(k []byte) []any { return []any{btoi(k)} }

// scanID reads a row of (id, data).
func scanID(rows pgx.Rows) (copyRow, error) {
	var id int64
	var data []byte
	err := rows.Scan(&id, &data)
	return copyRow{itob(id), data}, err
}

// putJSON decodes a row's JSON and writes it with a pgPut function.
func putJSON[T any](fn func(context.Context, pgTx, T) error) func(context.Context, pgTx, copyRow) error {
	return func(ctx context.Context, q pgTx, r copyRow) error {
		var v T
		if err := json.Unmarshal(r.v, &v); err != nil {
			return fmt.Errorf("decode %x: %w", r.k, err)
		}
		return fn(ctx, q, v)
	}
}

// indexJSON decodes a row's JSON and writes bbolt's index entries of it.
func indexJSON[T any](fn func(tx *bolt.Tx, v *T) error) func(*bolt.Tx, copyRow) error {
	return func(tx *bolt.Tx, r copyRow) error {
		var v T
		if err := json.Unmarshal(r.v, &v); err != nil {
			return fmt.Errorf("decode %x: %w", r.k, err)
		}
		return fn(tx, &v)
	}
}

// puts writes index entries.
func puts(tx *bolt.Tx, entries ...copyEntry) error {
	for _, e := range entries {
		if err := bucket(tx, e.b).Put(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry is an entry of bucket b.
type copyEntry struct {
	b    string
	k, v []byte
}

func idKind(name, bucket, seq, table string, put func(context.Context, pgTx, copyRow) error, index func(*bolt.Tx, copyRow) error) copyKindDef {
	return copyKindDef{name: name, bucket: bucket, seq: seq, json: true, table: table,
		keyCols: []string{"id"}, selCols: "data", keyArgs: idArgs, scan: scanID, put: put, index: index}
}

func noIndex(*bolt.Tx, copyRow) error { return nil }

// errDuplicateContent is the copy's error when a bbolt store made before
// its sourcestamps were indexed by content holds two of one content:
// PostgreSQL keeps one sourcestamp per content (its hash is unique), and
// changing the younger one's id would change the changes and buildsets
// naming it.
var errDuplicateContent = errors.New("the source has two sourcestamps of one content (a store older than gbb's content index): " +
	"PostgreSQL keeps one per content, so this store can be copied to bbolt only")

// copyKinds are the kinds in the order they are copied: every row refers
// only to kinds before its own (PostgreSQL's foreign keys).
var copyKinds = []copyKindDef{
	idKind("masters", bucketMaster, "masters_id_seq", "masters", putJSON(pgPutMaster),
		indexJSON(func(tx *bolt.Tx, m *Master) error {
			return puts(tx, copyEntry{bucketMasterByName, []byte(m.Name), itob(m.ID)})
		})),
	idKind("builders", bucketBuilder, "builders_id_seq", "builders", putJSON(pgPutBuilder),
		indexJSON(func(tx *bolt.Tx, b *Builder) error {
			return puts(tx, copyEntry{bucketBuilderByName, []byte(b.Name), itob(b.ID)})
		})),
	idKind("workers", bucketWorker, "workers_id_seq", "workers", putJSON(pgPutWorker),
		indexJSON(func(tx *bolt.Tx, w *Worker) error {
			return puts(tx, copyEntry{bucketWorkerByName, []byte(w.Name), itob(w.ID)})
		})),
	// The content index and reference counts are made at the end, from
	// the changes and buildsets.
	idKind("sourcestamps", bucketSourceStamp, "sourcestamps_id_seq", "sourcestamps",
		putJSON(func(ctx context.Context, q pgTx, ss SourceStamp) error {
			_, err := q.Exec(ctx, `INSERT INTO sourcestamps (id, hash, refs, data) VALUES ($1, $2, 0, $3)`,
				ss.ID, ssHash(ss), pgJSON(ss))
			return err
		}), noIndex),
	// The index of each source's latest change is made at the end.
	idKind("changes", bucketChange, "changes_id_seq", "changes", putJSON(pgPutChange), noIndex),
	{name: "object state", bucket: bucketObjectState, json: true, table: "object_state",
		keyCols: []string{`object_name COLLATE "C"`, `key COLLATE "C"`}, selCols: "value",
		keyArgs: func(k []byte) []any {
			name, key, _ := strings.Cut(string(k), "\x00")
			return []any{name, key}
		},
		scan: func(rows pgx.Rows) (copyRow, error) {
			var name, key string
			var value []byte
			err := rows.Scan(&name, &key, &value)
			return copyRow{stateKey(name, key), value}, err
		},
		put: func(ctx context.Context, q pgTx, r copyRow) error {
			name, key, _ := strings.Cut(string(r.k), "\x00")
			_, err := q.Exec(ctx, `INSERT INTO object_state (object_name, key, value) VALUES ($1, $2, $3)`, name, key, r.v)
			return err
		},
		index: noIndex},
	idKind("buildsets", bucketBuildset, "buildsets_id_seq", "buildsets",
		putJSON(func(ctx context.Context, q pgTx, bs Buildset) error {
			if err := pgPutBuildset(ctx, q, bs); err != nil {
				return err
			}
			for _, ss := range bs.SourceStamps {
				if _, err := q.Exec(ctx, `INSERT INTO buildset_sourcestamps (buildset_id, sourcestamp_id) VALUES ($1, $2)
					ON CONFLICT DO NOTHING`, bs.ID, ss.ID); err != nil {
					return err
				}
			}
			return nil
		}),
		indexJSON(func(tx *bolt.Tx, bs *Buildset) error {
			for _, ss := range bs.SourceStamps {
				if err := puts(tx, copyEntry{bucketBuildsetBySourceStamp, key2(ss.ID, bs.ID), nil}); err != nil {
					return err
				}
			}
			if !bs.Complete {
				return puts(tx, copyEntry{bucketBuildsetIncomplete, itob(bs.ID), nil})
			}
			return nil
		})),
	idKind("build requests", bucketRequest, "buildrequests_id_seq", "buildrequests", putJSON(pgPutRequest),
		indexJSON(func(tx *bolt.Tx, br *BuildRequest) error {
			if err := puts(tx, copyEntry{bucketRequestByBuildset, key2(br.BuildsetID, br.ID), nil},
				copyEntry{bucketRequestByBuilder, key2(br.BuilderID, br.ID), nil}); err != nil {
				return err
			}
			if !br.Complete {
				if err := puts(tx, copyEntry{bucketRequestIncomplete, itob(br.ID), nil}); err != nil {
					return err
				}
			}
			return indexPending(tx, br)
		})),
	idKind("builds", bucketBuild, "builds_id_seq", "builds", putJSON(pgPutBuild),
		indexJSON(func(tx *bolt.Tx, b *Build) error {
			if err := puts(tx, copyEntry{bucketBuildByBuilder, key2(b.BuilderID, b.Number), itob(b.ID)},
				copyEntry{bucketBuildByWorker, key2(b.WorkerID, b.ID), nil}); err != nil {
				return err
			}
			if b.BuildRequestID != 0 {
				if err := puts(tx, copyEntry{bucketBuildByRequest, key2(b.BuildRequestID, b.ID), nil}); err != nil {
					return err
				}
			}
			if !b.Complete {
				return puts(tx, copyEntry{bucketBuildIncomplete, itob(b.ID), nil})
			}
			return nil
		})),
	idKind("steps", bucketStep, "steps_id_seq", "steps", putJSON(pgPutStep),
		indexJSON(func(tx *bolt.Tx, s *Step) error {
			return puts(tx, copyEntry{bucketStepByBuild, key2(s.BuildID, int64(s.Number)), itob(s.ID)},
				copyEntry{bucketStepByName, keyName(s.BuildID, s.Name), itob(s.ID)})
		})),
	idKind("logs", bucketLog, "logs_id_seq", "logs", putJSON(pgPutLog),
		indexJSON(func(tx *bolt.Tx, l *Log) error {
			return puts(tx, copyEntry{bucketLogByStep, key2(l.StepID, l.ID), nil},
				copyEntry{bucketLogBySlug, keyName(l.StepID, l.Slug), itob(l.ID)})
		})),
	{name: "log chunks", bucket: bucketLogChunk, table: "logchunks",
		keyCols: []string{"log_id", "first_line"}, selCols: "num_lines, data",
		keyArgs: func(k []byte) []any { return []any{btoi(k[:8]), btoi(k[8:])} },
		scan: func(rows pgx.Rows) (copyRow, error) {
			var logID, first int64
			var n int32
			var data []byte
			err := rows.Scan(&logID, &first, &n, &data)
			v := binary.BigEndian.AppendUint32(make([]byte, 0, chunkHeaderSize+len(data)), uint32(n))
			return copyRow{key2(logID, first), append(v, data...)}, err
		},
		put: func(ctx context.Context, q pgTx, r copyRow) error {
			if len(r.k) != 16 || len(r.v) < chunkHeaderSize {
				return fmt.Errorf("log chunk %x: malformed", r.k)
			}
			_, err := q.Exec(ctx, `INSERT INTO logchunks (log_id, first_line, num_lines, data) VALUES ($1, $2, $3, $4)`,
				btoi(r.k[:8]), btoi(r.k[8:]), int32(binary.BigEndian.Uint32(r.v)), r.v[chunkHeaderSize:])
			return err
		},
		index: noIndex},
	{name: "resume points", bucket: bucketResume, json: true, table: "build_resume",
		keyCols: []string{"build_id"}, selCols: "data", keyArgs: idArgs, scan: scanID,
		put: putJSON(pgPutResumePoint), index: noIndex},
	{name: "outbox", bucket: bucketOutbox, seq: "outbox_seq_seq", json: true, table: "outbox",
		keyCols: []string{"seq"}, selCols: "data", keyArgs: idArgs, scan: scanID,
		put: putJSON(func(ctx context.Context, q pgTx, e OutboxEntry) error {
			_, err := q.Exec(ctx, `INSERT INTO outbox (seq, event, build_id, data) VALUES ($1, $2, $3, $4)`,
				e.Seq, e.Event, e.BuildID, pgJSON(e))
			return err
		}),
		index: indexJSON(func(tx *bolt.Tx, e *OutboxEntry) error {
			if e.Event == OutboxFinished {
				return puts(tx, copyEntry{bucketOutboxFinished, itob(e.BuildID), itob(e.Seq)})
			}
			return nil
		})},
	{name: "outbox cursors", bucket: bucketOutboxCursor, table: "outbox_cursor",
		keyCols: []string{`reporter COLLATE "C"`}, selCols: "seq",
		keyArgs: func(k []byte) []any { return []any{string(k)} },
		scan: func(rows pgx.Rows) (copyRow, error) {
			var reporter string
			var seq int64
			err := rows.Scan(&reporter, &seq)
			return copyRow{[]byte(reporter), itob(seq)}, err
		},
		put: func(ctx context.Context, q pgTx, r copyRow) error {
			if len(r.v) != 8 {
				return fmt.Errorf("outbox cursor %q: malformed", r.k)
			}
			_, err := q.Exec(ctx, `INSERT INTO outbox_cursor (reporter, seq) VALUES ($1, $2)`, string(r.k), btoi(r.v))
			return err
		},
		index: noIndex},
	{name: "deliveries", bucket: bucketDelivery, json: true, table: "deliveries",
		keyCols: []string{"build_id", "seq", `reporter COLLATE "C"`}, selCols: "data",
		keyArgs: func(k []byte) []any { return []any{btoi(k[:8]), btoi(k[8:16]), string(k[16:])} },
		scan: func(rows pgx.Rows) (copyRow, error) {
			var buildID, seq int64
			var reporter string
			var data []byte
			err := rows.Scan(&buildID, &seq, &reporter, &data)
			return copyRow{append(key2(buildID, seq), reporter...), data}, err
		},
		put: putJSON(pgPutDelivery),
		index: indexJSON(func(tx *bolt.Tx, d *Delivery) error {
			if d.State == DeliveryFailed {
				return puts(tx, copyEntry{bucketDeliveryFailed, deliveryKey(*d), nil})
			}
			return nil
		})},
}

// copySide is a store as CopyDB reads and writes it.
type copySide interface {
	name() string // for messages, without a password
	// read returns at most limit rows of k after the key after (nil: from
	// the first), in key order, stopping early past budget bytes.
	read(ctx context.Context, k copyKindDef, after []byte, limit, budget int) ([]copyRow, error)
	// last returns the row of k with the highest key; ok is false when
	// there is none.
	last(ctx context.Context, k copyKindDef) (r copyRow, ok bool, err error)
	// get returns the row of k under key.
	get(ctx context.Context, k copyKindDef, key []byte) (v []byte, ok bool, err error)
	// count counts the rows of k, up to the key upto when not nil.
	count(ctx context.Context, k copyKindDef, upto []byte) (int64, error)
	// seq is the highest id of k ever given.
	seq(ctx context.Context, k copyKindDef) (int64, error)
	write(ctx context.Context, k copyKindDef, rows []copyRow) error
	// finish sets the sequences and makes what is derived from the rows.
	finish(ctx context.Context, src copySide, seqs map[string]int64) error
	check() error
	refuseActive(ctx context.Context) error
	// exclusive keeps any other copy-db out until unlock is called.
	exclusive() (unlock func(), err error)
	close()
}

func boltPath(url, basedir string) string {
	p := strings.TrimPrefix(url, "bbolt:")
	if !filepath.IsAbs(p) {
		p = filepath.Join(basedir, p)
	}
	return p
}

// sameStore says whether from and to name one store.
func sameStore(from, to, basedir string) (bool, error) {
	if config.IsPostgresURL(from) != config.IsPostgresURL(to) {
		return false, nil
	}
	if config.IsPostgresURL(from) {
		a, err := pgconn.ParseConfig(from)
		if err != nil {
			return false, fmt.Errorf("copy-db: source: bad PostgreSQL URL: %w", redactErr(err))
		}
		b, err := pgconn.ParseConfig(to)
		if err != nil {
			return false, fmt.Errorf("copy-db: target: bad PostgreSQL URL: %w", redactErr(err))
		}
		return a.Host == b.Host && a.Port == b.Port && a.Database == b.Database, nil
	}
	a, err := os.Stat(boltPath(from, basedir))
	if err != nil {
		return false, nil // Open says why
	}
	b, err := os.Stat(boltPath(to, basedir))
	if err != nil {
		return false, nil
	}
	return os.SameFile(a, b), nil
}

func openCopySide(url, basedir string, mustExist bool) (copySide, error) {
	if config.IsPostgresURL(url) {
		p, err := OpenPG(url, Options{})
		if err != nil {
			return nil, err
		}
		return &pgSide{p}, nil
	}
	path := boltPath(url, basedir)
	if mustExist {
		if _, err := os.Stat(path); err != nil {
			return nil, err
		}
	}
	db, err := Open(path, Options{})
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w (stop the master first)", err)
		}
		return nil, err
	}
	return &boltSide{db}, nil
}

// resumePoints checks that dst holds a prefix of src, as a copy stopped
// midway leaves it, and returns the key after which each kind's copy goes
// on (nil: from its first row).
func resumePoints(ctx context.Context, src, dst copySide) ([][]byte, error) {
	start := make([][]byte, len(copyKinds))
	partial := "" // the first kind the target lacks rows of
	for i, k := range copyKinds {
		tl, tok, err := dst.last(ctx, k)
		if err != nil {
			return nil, err
		}
		if !tok {
			// A kind the source has no row of either is complete.
			if _, sok, err := src.last(ctx, k); err != nil {
				return nil, err
			} else if sok && partial == "" {
				partial = k.name
			}
			continue
		}
		differ := func(format string, args ...any) error {
			return fmt.Errorf("it holds a different history, not a copy of %s stopped midway (%s: %s); copy into an empty store",
				src.name(), k.name, fmt.Sprintf(format, args...))
		}
		if partial != "" {
			return nil, differ("it has rows, while %s, copied before, is not complete: has the source changed since?", partial)
		}
		sv, sok, err := src.get(ctx, k, tl.k)
		if err != nil {
			return nil, err
		}
		if !sok {
			return nil, differ("row %x is not in the source", tl.k)
		}
		if !sameValue(k, sv, tl.v) {
			return nil, differ("row %x differs from the source's", tl.k)
		}
		nt, err := dst.count(ctx, k, nil)
		if err != nil {
			return nil, err
		}
		ns, err := src.count(ctx, k, tl.k)
		if err != nil {
			return nil, err
		}
		if nt != ns {
			return nil, differ("%d rows up to %x, the source %d", nt, tl.k, ns)
		}
		sl, _, err := src.last(ctx, k)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(sl.k, tl.k) {
			partial = k.name
		}
		start[i] = tl.k
	}
	return start, nil
}

// sameValue compares two values of kind k: JSON decoded, since the two
// stores may encode a record differently.
func sameValue(k copyKindDef, a, b []byte) bool {
	if !k.json {
		return bytes.Equal(a, b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// copyKind copies the rows of k after after, batch by batch.
func copyKind(ctx context.Context, src, dst copySide, k copyKindDef, after []byte, opts CopyOptions) (int64, error) {
	var copied int64
	have, err := dst.count(ctx, k, nil)
	if err != nil {
		return 0, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return copied, err
		}
		rows, err := src.read(ctx, k, after, opts.BatchRows, copyBatchBytes)
		if err != nil {
			return copied, fmt.Errorf("read %s: %w", src.name(), err)
		}
		if len(rows) == 0 {
			break
		}
		if err := dst.write(ctx, k, rows); err != nil {
			return copied, fmt.Errorf("write %s: %w", dst.name(), err)
		}
		copied += int64(len(rows))
		have += int64(len(rows))
		after = rows[len(rows)-1].k
		if opts.Progress != nil {
			opts.Progress(k.name, have)
		}
	}
	if copied > 0 {
		fmt.Fprintf(opts.Out, "%s: %d copied\n", k.name, copied)
	}
	return copied, nil
}

// boltSide is a bbolt store.
type boltSide struct{ db *DB }

func (b *boltSide) name() string { return b.db.path }
func (b *boltSide) close()       { b.db.Close() }
func (b *boltSide) check() error { return b.db.Check() }

// refuseActive has nothing to do: Open has the file's lock, which a
// running master holds.
func (b *boltSide) refuseActive(context.Context) error { return nil }

// exclusive has nothing to do either: the file's lock is held.
func (b *boltSide) exclusive() (func(), error) { return func() {}, nil }

func (b *boltSide) read(_ context.Context, k copyKindDef, after []byte, limit, budget int) ([]copyRow, error) {
	var rows []copyRow
	err := b.db.bolt.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(k.bucket))
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		key, v := c.First()
		if after != nil {
			key, v = c.Seek(after)
			if key != nil && bytes.Equal(key, after) {
				key, v = c.Next()
			}
		}
		size := 0
		for ; key != nil && len(rows) < limit && size < budget; key, v = c.Next() {
			rows = append(rows, copyRow{bytes.Clone(key), bytes.Clone(v)})
			size += len(key) + len(v)
		}
		return nil
	})
	return rows, err
}

func (b *boltSide) last(_ context.Context, k copyKindDef) (r copyRow, ok bool, err error) {
	err = b.db.bolt.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte(k.bucket)); bk != nil {
			if key, v := bk.Cursor().Last(); key != nil {
				r, ok = copyRow{bytes.Clone(key), bytes.Clone(v)}, true
			}
		}
		return nil
	})
	return r, ok, err
}

func (b *boltSide) get(_ context.Context, k copyKindDef, key []byte) (v []byte, ok bool, err error) {
	err = b.db.bolt.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte(k.bucket)); bk != nil {
			if got := bk.Get(key); got != nil {
				v, ok = bytes.Clone(got), true
			}
		}
		return nil
	})
	return v, ok, err
}

func (b *boltSide) count(_ context.Context, k copyKindDef, upto []byte) (int64, error) {
	var n int64
	err := b.db.bolt.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(k.bucket))
		if bk == nil {
			return nil
		}
		if upto == nil {
			n = int64(bk.Stats().KeyN)
			return nil
		}
		c := bk.Cursor()
		for key, _ := c.First(); key != nil && bytes.Compare(key, upto) <= 0; key, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

func (b *boltSide) seq(_ context.Context, k copyKindDef) (int64, error) {
	var n int64
	err := b.db.bolt.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte(k.bucket)); bk != nil {
			n = int64(bk.Sequence())
		}
		return nil
	})
	return n, err
}

func (b *boltSide) write(_ context.Context, k copyKindDef, rows []copyRow) error {
	return b.db.bolt.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(k.bucket)) // build_resume is made on first use
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := bk.Put(r.k, r.v); err != nil {
				return err
			}
			if err := k.index(tx, r); err != nil {
				return fmt.Errorf("index %s %x: %w", k.name, r.k, err)
			}
		}
		return nil
	})
}

// finish sets every bucket's sequence to the source's and makes the
// indexes and counts that are derived from many rows, with the functions
// Open uses to make them for an older store.
func (b *boltSide) finish(_ context.Context, _ copySide, seqs map[string]int64) error {
	return b.db.bolt.Update(func(tx *bolt.Tx) error {
		for _, k := range copyKinds {
			n, ok := seqs[k.name]
			if !ok {
				continue
			}
			bk := bucket(tx, k.bucket)
			// Never below the highest id copied.
			if key, _ := bk.Cursor().Last(); key != nil {
				n = max(n, btoi(key))
			}
			if err := bk.SetSequence(uint64(max(n, int64(bk.Sequence())))); err != nil {
				return err
			}
		}
		for _, name := range []string{bucketSourceStampByHash, bucketSourceStampRefs, bucketBuildCount, bucketChangeLatest} {
			if tx.Bucket([]byte(name)) != nil {
				if err := tx.DeleteBucket([]byte(name)); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := indexSourceStamps(tx); err != nil {
			return fmt.Errorf("index sourcestamps: %w", err)
		}
		if err := countSourceStampRefs(tx); err != nil {
			return fmt.Errorf("count sourcestamp references: %w", err)
		}
		if err := buildCounts(tx); err != nil {
			return fmt.Errorf("count builds: %w", err)
		}
		return indexLatestChanges(tx, bucket(tx, bucketChangeLatest))
	})
}

// refuseForPG refuses a store holding what PostgreSQL cannot: a NUL
// character in a record (written "\u0000" in its JSON: every JSON
// operator fails on the row, the store's check and copy-db's own
// included) or in a key that becomes a text column, or such a key that is
// not UTF-8. Stores now refuse such records (ErrInvalidChange); an older
// bbolt store may hold them. It names the first records and how many.
func (b *boltSide) refuseForPG() error {
	var bad []string
	n := 0
	err := b.db.bolt.View(func(tx *bolt.Tx) error {
		for _, k := range copyKinds {
			bk := tx.Bucket([]byte(k.bucket))
			if bk == nil {
				continue
			}
			textKey := reflect.ValueOf(k.keyArgs).Pointer() != reflect.ValueOf(idArgs).Pointer()
			err := bk.ForEach(func(key, v []byte) error {
				why := ""
				if k.json && jsonHasNUL(v) {
					why = "a NUL character in its record"
				}
				if textKey {
					for _, a := range k.keyArgs(key) {
						if s, ok := a.(string); ok && pgBadText(s) {
							why = fmt.Sprintf("its key %q is no UTF-8 text without NUL bytes", s)
						}
					}
				}
				if why == "" {
					return nil
				}
				if n++; len(bad) < 10 {
					name := fmt.Sprintf("%s %q", k.name, key)
					if !textKey {
						name = fmt.Sprintf("%s %d", k.name, btoi(key))
					}
					bad = append(bad, name+": "+why)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d records PostgreSQL cannot hold (nothing was copied; see docs/copy-db.md): %s",
		n, strings.Join(bad, "; "))
}

// samePG says whether a and b are one database (and schema): a random
// mark is put in b, in a table of copy-db's own, and looked for in a.
func samePG(ctx context.Context, a, b *PG) (bool, error) {
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return false, err
	}
	mark := hex.EncodeToString(buf[:])
	if _, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS gbb_copy_db_mark (mark text PRIMARY KEY)`); err != nil {
		return false, fmt.Errorf("mark the target: %w", err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO gbb_copy_db_mark (mark) VALUES ($1)`, mark); err != nil {
		return false, fmt.Errorf("mark the target: %w", err)
	}
	defer b.pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS gbb_copy_db_mark`)
	var found bool
	err := a.pool.QueryRow(ctx, `SELECT to_regclass('gbb_copy_db_mark') IS NOT NULL`).Scan(&found)
	if err != nil || !found {
		return false, err
	}
	err = a.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM gbb_copy_db_mark WHERE mark = $1)`, mark).Scan(&found)
	return found, err
}

// pgSide is a PostgreSQL store.
type pgSide struct{ p *PG }

func (s *pgSide) name() string { return s.p.url }
func (s *pgSide) close()       { s.p.Close() }
func (s *pgSide) check() error { return s.p.Check() }

// refuseActive refuses a database on which a master is running: one
// whose row says active and was seen within ActiveWindow.
func (s *pgSide) refuseActive(ctx context.Context) error {
	ms, err := pgList[Master](ctx, s.p.pool, "SELECT data FROM masters ORDER BY id")
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Active && time.Since(m.LastSeen) < ActiveWindow {
			return fmt.Errorf("master %q is running on it (seen %s ago): stop every master first, or use --force",
				m.Name, time.Since(m.LastSeen).Round(time.Second))
		}
	}
	return nil
}

// exclusive takes the database's copy-db advisory lock.
func (s *pgSide) exclusive() (func(), error) {
	l, ok, err := s.p.Lock("copy-db")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("another copy-db is copying into it")
	}
	return func() { l.Unlock() }, nil
}

// keyList is k's key columns, joined.
func keyList(k copyKindDef) string { return strings.Join(k.keyCols, ", ") }

// keyCmp is "(key columns) op (args from n)".
func keyCmp(k copyKindDef, op string, n int) string {
	ps := make([]string, len(k.keyCols))
	for i := range ps {
		ps[i] = fmt.Sprintf("$%d", n+i)
	}
	return "(" + keyList(k) + ") " + op + " (" + strings.Join(ps, ", ") + ")"
}

func (s *pgSide) query(ctx context.Context, k copyKindDef, where, tail string, args []any, budget int) ([]copyRow, error) {
	sql := "SELECT " + keyList(k) + ", " + k.selCols + " FROM " + k.table
	if where != "" {
		sql += " WHERE " + where
	}
	rows, err := s.p.pool.Query(ctx, sql+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []copyRow
	size := 0
	for rows.Next() {
		r, err := k.scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		if size += len(r.k) + len(r.v); size >= budget {
			break
		}
	}
	if size >= budget {
		return out, nil // closing early is no error
	}
	return out, rows.Err()
}

func (s *pgSide) read(ctx context.Context, k copyKindDef, after []byte, limit, budget int) ([]copyRow, error) {
	where, args := "", []any{}
	if after != nil {
		where, args = keyCmp(k, ">", 1), k.keyArgs(after)
	}
	args = append(args, limit)
	return s.query(ctx, k, where, fmt.Sprintf("ORDER BY %s LIMIT $%d", keyList(k), len(args)), args, budget)
}

func (s *pgSide) last(ctx context.Context, k copyKindDef) (copyRow, bool, error) {
	desc := make([]string, len(k.keyCols))
	for i, c := range k.keyCols {
		desc[i] = c + " DESC"
	}
	rows, err := s.query(ctx, k, "", "ORDER BY "+strings.Join(desc, ", ")+" LIMIT 1", nil, copyBatchBytes)
	if err != nil || len(rows) == 0 {
		return copyRow{}, false, err
	}
	return rows[0], true, nil
}

func (s *pgSide) get(ctx context.Context, k copyKindDef, key []byte) ([]byte, bool, error) {
	rows, err := s.query(ctx, k, keyCmp(k, "=", 1), "", k.keyArgs(key), copyBatchBytes)
	if err != nil || len(rows) == 0 {
		return nil, false, err
	}
	return rows[0].v, true, nil
}

func (s *pgSide) count(ctx context.Context, k copyKindDef, upto []byte) (int64, error) {
	sql, args := "SELECT count(*) FROM "+k.table, []any(nil)
	if upto != nil {
		sql, args = sql+" WHERE "+keyCmp(k, "<=", 1), k.keyArgs(upto)
	}
	var n int64
	err := s.p.pool.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

func (s *pgSide) seq(ctx context.Context, k copyKindDef) (int64, error) {
	var last int64
	var called bool
	if err := s.p.pool.QueryRow(ctx, "SELECT last_value, is_called FROM "+k.seq).Scan(&last, &called); err != nil {
		return 0, err
	}
	if !called {
		last-- // setval(…, false) or never used: last_value is the next id
	}
	return last, nil
}

// pgQueue queues the statements of the pgPut functions in a batch, sent
// in one round trip.
type pgQueue struct{ b *pgx.Batch }

func (q pgQueue) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q.b.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

var errQueued = errors.New("store: a query inside a queued batch")

func (q pgQueue) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errQueued }
func (q pgQueue) QueryRow(context.Context, string, ...any) pgx.Row        { return errRow{} }

type errRow struct{}

func (errRow) Scan(...any) error { return errQueued }

func (s *pgSide) write(ctx context.Context, k copyKindDef, rows []copyRow) error {
	q := pgQueue{&pgx.Batch{}}
	for _, r := range rows {
		if err := k.put(ctx, q, r); err != nil {
			return err
		}
	}
	err := pgx.BeginFunc(ctx, s.p.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, q.b).Close()
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "sourcestamps_hash_key" {
		return fmt.Errorf("sourcestamps %d to %d: %w", btoi(rows[0].k), btoi(rows[len(rows)-1].k), errDuplicateContent)
	}
	return err
}

// finish sets every sequence to the source's, the sourcestamps'
// reference counts and the builders' next build numbers, in one
// transaction.
func (s *pgSide) finish(ctx context.Context, src copySide, seqs map[string]int64) error {
	next := map[int64]int64{}
	if ps, ok := src.(*pgSide); ok {
		rows, err := ps.p.pool.Query(ctx, "SELECT id, next_number FROM builders")
		if err != nil {
			return err
		}
		var id, n int64
		_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			next[id] = n
			return nil
		})
		if err != nil {
			return err
		}
	}
	return pgx.BeginFunc(ctx, s.p.pool, func(tx pgx.Tx) error {
		for _, k := range copyKinds {
			n, ok := seqs[k.name]
			if !ok {
				continue
			}
			var top int64
			if err := tx.QueryRow(ctx, "SELECT coalesce(max("+k.keyCols[0]+"), 0) FROM "+k.table).Scan(&top); err != nil {
				return err
			}
			if n = max(n, top); n > 0 {
				_, err := tx.Exec(ctx, "SELECT setval($1::regclass, $2, true)", k.seq, n)
				if err != nil {
					return err
				}
			}
		}
		// A sourcestamp's references: the changes naming it, and each
		// time a buildset names it (as bbolt's sourcestamp_refs).
		if _, err := tx.Exec(ctx, `UPDATE sourcestamps SET refs = 0 WHERE refs <> 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `WITH named AS (
				SELECT sourcestamp_id AS id FROM changes
				UNION ALL
				SELECT (e->>'ID')::bigint FROM buildsets b CROSS JOIN LATERAL json_array_elements(
					CASE WHEN json_typeof(b.data->'SourceStamps') = 'array' THEN b.data->'SourceStamps' ELSE '[]'::json END) e),
			counts AS (SELECT id, count(*) AS n FROM named GROUP BY id)
			UPDATE sourcestamps s SET refs = counts.n FROM counts WHERE counts.id = s.id`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE builders b SET next_number =
			coalesce((SELECT max(number) + 1 FROM builds WHERE builder_id = b.id), 1)`); err != nil {
			return err
		}
		for id, n := range next {
			if _, err := tx.Exec(ctx, "UPDATE builders SET next_number = greatest(next_number, $2) WHERE id = $1", id, n); err != nil {
				return err
			}
		}
		return nil
	})
}
