package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Options configures Open.
type Options struct {
	Timeout time.Duration // how long Open waits for the file lock; zero means 1s
	Logger  *slog.Logger  // nil means discard
	// Events receives an event after every committed change; nil means
	// none are published.
	Events Publisher
	// OnCommit, when set, is told how long each write transaction took,
	// its commit and sync included (for the metrics); nil means nobody.
	OnCommit func(time.Duration)
	// OnLog, when set, is told the bytes of each log batch stored (before
	// compression); nil means nobody.
	OnLog func(bytes int)
}

// DB is the master's store. It is safe for concurrent use.
type DB struct {
	path string
	bolt *bolt.DB
	log  *slog.Logger
	enc  *zstd.Encoder // EncodeAll is safe for concurrent use
	dec  *zstd.Decoder // DecodeAll is safe for concurrent use

	events Publisher  // nil means none
	pubMu  sync.Mutex // held from a write's start to its events' publication, when events is set
	writes writeQueue // the writes of update and batch waiting to commit

	outbox atomic.Pointer[func()] // see SetOutbox; nil: off

	onCommit func(time.Duration) // Options.OnCommit, or nil
	onLog    func(int)           // Options.OnLog, or nil
}

// schemaVersion is written in the meta bucket of a new database.
const schemaVersion = "1"

// Buckets. Records are JSON keyed by id; indexes are keyed by big-endian ids.
const (
	bucketMeta = "meta"

	bucketMaster       = "master"
	bucketMasterByName = "master_by_name" // name → id

	bucketBuilder       = "builder"
	bucketBuilderByName = "builder_by_name" // name → id

	bucketWorker       = "worker"
	bucketWorkerByName = "worker_by_name" // name → id

	bucketSourceStamp        = "sourcestamp"
	bucketBuildset           = "buildset"
	bucketBuildsetIncomplete = "buildset_incomplete" // bsid → ""

	bucketRequest           = "buildrequest"
	bucketRequestByBuildset = "buildrequest_by_buildset" // bsid|brid → ""
	bucketRequestByBuilder  = "buildrequest_by_builder"  // builderid|brid → ""
	bucketRequestIncomplete = "buildrequest_incomplete"  // brid → ""

	bucketBuild           = "build"
	bucketBuildByBuilder  = "build_by_builder" // builderid|number → buildid
	bucketBuildByRequest  = "build_by_request" // brid|buildid → ""
	bucketBuildByWorker   = "build_by_worker"  // workerid|buildid → ""
	bucketBuildIncomplete = "build_incomplete" // buildid → ""

	bucketStep         = "step"
	bucketStepByBuild  = "step_by_build" // buildid|number → stepid
	bucketStepByName   = "step_by_name"  // buildid|name → stepid
	bucketLog          = "log"
	bucketLogByStep    = "log_by_step" // stepid|logid → ""
	bucketLogBySlug    = "log_by_slug" // stepid|slug → logid
	bucketLogChunk     = "logchunk"    // logid|first line → uint32 line count, zstd data
	chunkHeaderSize    = 4
	chunkWindow        = 1 << 20 // zstd window of the log chunks
	defaultLockTimeout = time.Second
)

// allBuckets lists every bucket Open creates.
func allBuckets() []string {
	return append(outboxBuckets(),
		bucketMeta,
		bucketMaster, bucketMasterByName,
		bucketBuilder, bucketBuilderByName,
		bucketWorker, bucketWorkerByName,
		bucketSourceStamp, bucketSourceStampByHash, bucketSourceStampRefs, bucketBuildset, bucketBuildsetIncomplete, bucketBuildsetBySourceStamp,
		bucketRequest, bucketRequestByBuildset, bucketRequestByBuilder, bucketRequestIncomplete, bucketRequestPending, bucketRequestClaimed,
		bucketBuild, bucketBuildByBuilder, bucketBuildByRequest, bucketBuildByWorker, bucketBuildIncomplete,
		bucketBuildCount,
		bucketStep, bucketStepByBuild, bucketStepByName,
		bucketLog, bucketLogByStep, bucketLogBySlug, bucketLogChunk,
		bucketChange, bucketObjectState,
	)
}

// Open opens the store at path, creating it if missing. If another process
// holds the file, Open gives up after opts.Timeout with an error wrapping
// ErrLocked.
func Open(path string, opts Options) (*DB, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: another master is probably running on it: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		newPending := tx.Bucket([]byte(bucketRequestPending)) == nil || tx.Bucket([]byte(bucketRequestClaimed)) == nil
		newCounts := tx.Bucket([]byte(bucketBuildCount)) == nil
		for _, k := range [][]byte{countBuildsets, countBuildsetsIncomplete, countRequests, countRequestsIncomplete, countChanges} {
			newCounts = newCounts || tx.Bucket([]byte(bucketBuildCount)).Get(k) == nil
		}
		newSSIndex := tx.Bucket([]byte(bucketSourceStampByHash)) == nil
		newSSRefs := tx.Bucket([]byte(bucketSourceStampRefs)) == nil
		newBSIndex := tx.Bucket([]byte(bucketBuildsetBySourceStamp)) == nil
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		if newPending {
			if err := buildPendingIndex(tx); err != nil {
				return fmt.Errorf("index pending build requests: %w", err)
			}
		}
		if newCounts {
			if err := buildCounts(tx); err != nil {
				return fmt.Errorf("count builds: %w", err)
			}
		}
		if newSSIndex {
			if err := indexSourceStamps(tx); err != nil {
				return fmt.Errorf("index sourcestamps: %w", err)
			}
		}
		if newSSRefs {
			if err := countSourceStampRefs(tx); err != nil {
				return fmt.Errorf("count sourcestamp references: %w", err)
			}
		}
		if newBSIndex {
			if err := indexBuildsets(tx); err != nil {
				return fmt.Errorf("index buildsets by sourcestamp: %w", err)
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		if meta.Get([]byte("version")) == nil {
			return meta.Put([]byte("version"), []byte(schemaVersion))
		}
		return nil
	})
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// A chunk is one AppendLog batch, about 1 MiB at most (the build's
	// log writer), and is compressed alone: a larger window than that
	// finds nothing more, and each concurrent EncodeAll would keep a
	// history of twice the default 8 MiB window (32 MB of the master's
	// heap with 20 logs written at once). SpeedFastest: on a real build's
	// output in 1 MiB chunks it encodes ~20 % faster than SpeedDefault
	// for ~3 % more bytes, and the encoder was the largest cost of
	// storing a log. The decoder reads chunks of any level.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(chunkWindow))
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		enc.Close()
		bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	logger.Debug("store opened", "path", path)
	return &DB{path: path, bolt: bdb, log: logger, enc: enc, dec: dec, events: opts.Events,
		onCommit: opts.OnCommit, onLog: opts.OnLog}, nil
}

// Close closes the store. Calls in progress finish first; none may start
// after it.
func (db *DB) Close() error {
	err := db.bolt.Close() // waits for open transactions
	if eerr := db.enc.Close(); err == nil {
		err = eerr
	}
	db.dec.Close()
	if err != nil {
		return fmt.Errorf("close store %s: %w", db.path, err)
	}
	return nil
}

// Check runs bbolt's consistency check and verifies the store's own
// invariants: every request's buildset exists, every build's request exists,
// every step's build exists, every log's step exists, every log's line count
// matches its chunks, and the indexes point at existing records. It returns
// all problems found, joined.
func (db *DB) Check() error {
	var errs []error
	// bbolt's check is only safe next to writers when it runs in a writable
	// transaction; this one writes nothing.
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		errs = append(errs, checkInvariants(tx)...)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("check store: %w", err)
	}
	return nil
}

func checkInvariants(tx *bolt.Tx) []error {
	var errs []error
	exists := func(bucket string, id int64) bool {
		return tx.Bucket([]byte(bucket)).Get(itob(id)) != nil
	}
	each := func(bucket string, fn func(id int64, data []byte)) {
		tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			fn(btoi(k), v)
			return nil
		})
	}
	decode := func(bucket string, id int64, data []byte, v any) bool {
		if err := json.Unmarshal(data, v); err != nil {
			errs = append(errs, fmt.Errorf("%s %d: %w", bucket, id, err))
			return false
		}
		return true
	}
	each(bucketBuildset, func(id int64, data []byte) {
		var bs Buildset
		if decode(bucketBuildset, id, data, &bs) && !bs.Complete && !exists(bucketBuildsetIncomplete, id) {
			errs = append(errs, fmt.Errorf("buildset %d: incomplete but not indexed", id))
		}
	})
	each(bucketRequest, func(id int64, data []byte) {
		var br BuildRequest
		if !decode(bucketRequest, id, data, &br) {
			return
		}
		if !exists(bucketBuildset, br.BuildsetID) {
			errs = append(errs, fmt.Errorf("buildrequest %d: buildset %d missing", id, br.BuildsetID))
		}
		if !exists(bucketBuilder, br.BuilderID) {
			errs = append(errs, fmt.Errorf("buildrequest %d: builder %d missing", id, br.BuilderID))
		}
		if !br.Complete && !exists(bucketRequestIncomplete, id) {
			errs = append(errs, fmt.Errorf("buildrequest %d: incomplete but not indexed", id))
		}
	})
	each(bucketBuild, func(id int64, data []byte) {
		var b Build
		if !decode(bucketBuild, id, data, &b) {
			return
		}
		if b.BuildRequestID != 0 && !exists(bucketRequest, b.BuildRequestID) {
			errs = append(errs, fmt.Errorf("build %d: buildrequest %d missing", id, b.BuildRequestID))
		}
		if !exists(bucketBuilder, b.BuilderID) {
			errs = append(errs, fmt.Errorf("build %d: builder %d missing", id, b.BuilderID))
		}
		if v := tx.Bucket([]byte(bucketBuildByBuilder)).Get(key2(b.BuilderID, b.Number)); v == nil || btoi(v) != id {
			errs = append(errs, fmt.Errorf("build %d: not indexed as number %d of builder %d", id, b.Number, b.BuilderID))
		}
		if !b.Complete && !exists(bucketBuildIncomplete, id) {
			errs = append(errs, fmt.Errorf("build %d: incomplete but not indexed", id))
		}
	})
	each(bucketStep, func(id int64, data []byte) {
		var s Step
		if !decode(bucketStep, id, data, &s) {
			return
		}
		if !exists(bucketBuild, s.BuildID) {
			errs = append(errs, fmt.Errorf("step %d: build %d missing", id, s.BuildID))
		}
		if v := tx.Bucket([]byte(bucketStepByBuild)).Get(key2(s.BuildID, int64(s.Number))); v == nil || btoi(v) != id {
			errs = append(errs, fmt.Errorf("step %d: not indexed as number %d of build %d", id, s.Number, s.BuildID))
		}
	})

	// Sum the chunks of every log, checking they follow each other.
	type tally struct {
		lines int64
		bad   bool
	}
	chunks := map[int64]*tally{}
	tx.Bucket([]byte(bucketLogChunk)).ForEach(func(k, v []byte) error {
		logID, first := btoi(k[:8]), btoi(k[8:])
		t := chunks[logID]
		if t == nil {
			t = &tally{}
			chunks[logID] = t
		}
		if first != t.lines || len(v) < chunkHeaderSize {
			t.bad = true
			return nil
		}
		t.lines += int64(binary.BigEndian.Uint32(v))
		return nil
	})
	each(bucketLog, func(id int64, data []byte) {
		var l Log
		if !decode(bucketLog, id, data, &l) {
			return
		}
		if !exists(bucketStep, l.StepID) {
			errs = append(errs, fmt.Errorf("log %d: step %d missing", id, l.StepID))
		}
		t := chunks[id]
		delete(chunks, id)
		switch {
		case l.Type == LogDeleted:
			// Its lines are gone, or going (DeleteLogsBefore).
		case t == nil && l.NumLines != 0:
			errs = append(errs, fmt.Errorf("log %d: %d lines but no chunks", id, l.NumLines))
		case t != nil && t.bad:
			errs = append(errs, fmt.Errorf("log %d: chunks do not follow each other", id))
		case t != nil && t.lines != l.NumLines:
			errs = append(errs, fmt.Errorf("log %d: %d lines but chunks hold %d", id, l.NumLines, t.lines))
		}
	})
	for id := range chunks {
		errs = append(errs, fmt.Errorf("log %d: chunks without a log", id))
	}
	errs = append(errs, checkChanges(tx)...)
	errs = append(errs, checkSourceStamps(tx)...)
	errs = append(errs, checkChangeParents(tx)...)
	errs = append(errs, checkBuildsetIndex(tx)...)
	errs = append(errs, checkPending(tx)...)
	errs = append(errs, checkCounts(tx)...)

	// Indexes whose values are record ids.
	for _, ix := range []struct{ index, bucket string }{
		{bucketMasterByName, bucketMaster},
		{bucketBuilderByName, bucketBuilder},
		{bucketWorkerByName, bucketWorker},
		{bucketBuildByBuilder, bucketBuild},
		{bucketStepByBuild, bucketStep},
		{bucketStepByName, bucketStep},
		{bucketLogBySlug, bucketLog},
	} {
		tx.Bucket([]byte(ix.index)).ForEach(func(k, v []byte) error {
			if len(v) != 8 || !exists(ix.bucket, btoi(v)) {
				errs = append(errs, fmt.Errorf("index %s: entry %x points at no %s", ix.index, k, ix.bucket))
			}
			return nil
		})
	}
	// Indexes whose keys end with record ids.
	for _, ix := range []struct{ index, bucket string }{
		{bucketBuildsetIncomplete, bucketBuildset},
		{bucketRequestByBuildset, bucketRequest},
		{bucketRequestByBuilder, bucketRequest},
		{bucketRequestIncomplete, bucketRequest},
		{bucketRequestPending, bucketRequest},
		{bucketRequestClaimed, bucketRequest},
		{bucketBuildByRequest, bucketBuild},
		{bucketBuildByWorker, bucketBuild},
		{bucketBuildIncomplete, bucketBuild},
		{bucketLogByStep, bucketLog},
	} {
		tx.Bucket([]byte(ix.index)).ForEach(func(k, v []byte) error {
			if !exists(ix.bucket, btoi(k[len(k)-8:])) {
				errs = append(errs, fmt.Errorf("index %s: entry %x points at no %s", ix.index, k, ix.bucket))
			}
			return nil
		})
	}
	return errs
}

// itob encodes an id as a big-endian key.
func itob(id int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(id))
}

// key2 joins two ids into a 16-byte key.
func key2(a, b int64) []byte {
	return binary.BigEndian.AppendUint64(itob(a), uint64(b))
}

// keyName joins an id and a name.
func keyName(a int64, name string) []byte {
	return append(itob(a), name...)
}

// btoi decodes the first 8 bytes of a big-endian key.
func btoi(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b))
}

func bucket(tx *bolt.Tx, name string) *bolt.Bucket {
	return tx.Bucket([]byte(name))
}

// nextID returns the next id of a bucket, from 1.
func nextID(tx *bolt.Tx, name string) (int64, error) {
	id, err := bucket(tx, name).NextSequence()
	return int64(id), err
}

// get decodes the record id of bucket name. json.Unmarshal copies, so the
// result does not point into the transaction's memory.
func get[T any](tx *bolt.Tx, name string, id int64) (T, error) {
	var v T
	data := bucket(tx, name).Get(itob(id))
	if data == nil {
		return v, fmt.Errorf("%s %d: %w", name, id, ErrNotFound)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode %s %d: %w", name, id, err)
	}
	return v, nil
}

// put encodes v as record id of bucket name. A build request written
// also updates the pending index (see bucketRequestPending).
func put(tx *bolt.Tx, name string, id int64, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if br, ok := v.(*BuildRequest); ok && name == bucketRequest {
		if err := indexPending(tx, br); err != nil {
			return err
		}
	}
	return bucket(tx, name).Put(itob(id), bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// modify reads record id of bucket name, lets fn change it and writes it back.
func modify[T any](tx *bolt.Tx, name string, id int64, fn func(*T) error) error {
	v, err := get[T](tx, name, id)
	if err != nil {
		return err
	}
	if err := fn(&v); err != nil {
		return err
	}
	return put(tx, name, id, &v)
}

// lookupName resolves a name index.
func lookupName(tx *bolt.Tx, index, name string) (int64, bool) {
	v := bucket(tx, index).Get([]byte(name))
	if v == nil {
		return 0, false
	}
	return btoi(v), true
}

// prefixIDs lists the ids under prefix in an index: the values when
// fromValue, otherwise the last 8 bytes of the keys.
func prefixIDs(tx *bolt.Tx, index string, prefix []byte, fromValue bool) []int64 {
	var ids []int64
	c := bucket(tx, index).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if fromValue {
			ids = append(ids, btoi(v))
		} else {
			ids = append(ids, btoi(k[len(k)-8:]))
		}
	}
	return ids
}

// lastUnder returns the last key under the 8-byte prefix id in a bucket
// whose keys are id|number, or nil.
func lastUnder(tx *bolt.Tx, index string, id int64) []byte {
	c := bucket(tx, index).Cursor()
	k, _ := c.Seek(itob(id + 1))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, itob(id)) {
		return nil
	}
	return k
}

// getAll decodes every record of bucket name whose id is in ids.
func getAll[T any](tx *bolt.Tx, name string, ids []int64) ([]T, error) {
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		v, err := get[T](tx, name, id)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// list decodes every record of bucket name, by id.
func list[T any](tx *bolt.Tx, name string) ([]T, error) {
	var out []T
	err := bucket(tx, name).ForEach(func(k, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("decode %s %d: %w", name, btoi(k), err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// at returns t in UTC without its monotonic reading, or now when t is zero.
func at(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t.UTC()
}
