package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// maxSlugLen is buildbot's limit on log slugs.
const maxSlugLen = 50

// slugify makes a log's slug from its name as buildbot's forceIdentifier
// does: every rune outside [A-Za-z0-9_-] becomes '_', and the result is at
// most 50 bytes long.
func slugify(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() == maxSlugLen {
			break
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// uniqueSlug is the slug of a log called name, among a step's slugs
// (taken says which are): _2, _3… added as buildbot does (both stores).
func uniqueSlug(name string, taken func(slug string) bool) string {
	base := slugify(name)
	slug := base
	for i := 2; taken(slug); i++ {
		suffix := "_" + strconv.Itoa(i)
		slug = base[:min(len(base), maxSlugLen-len(suffix))] + suffix
	}
	return slug
}

// AddLog adds a log to a step. Type is "s" (stdio), "t" (text) or "h"
// (html). Its Slug is made from name and kept unique within the step by
// adding _2, _3… as buildbot does. Two logs of one step may not share a name.
func (db *DB) AddLog(stepID int64, name, typ string) (Log, error) {
	var l Log
	err := db.batch(func(tx *bolt.Tx) error {
		switch typ {
		case "s", "t", "h":
		default:
			return fmt.Errorf("unknown log type %q", typ)
		}
		if bucket(tx, bucketStep).Get(itob(stepID)) == nil {
			return fmt.Errorf("step %d: %w", stepID, ErrNotFound)
		}
		logs, err := getAll[Log](tx, bucketLog, prefixIDs(tx, bucketLogByStep, itob(stepID), false))
		if err != nil {
			return err
		}
		for _, other := range logs {
			if other.Name == name {
				return fmt.Errorf("step %d already has a log called %q", stepID, name)
			}
		}
		slug := uniqueSlug(name, func(slug string) bool {
			return bucket(tx, bucketLogBySlug).Get(keyName(stepID, slug)) != nil
		})
		id, err := nextID(tx, bucketLog)
		if err != nil {
			return err
		}
		l = Log{ID: id, StepID: stepID, Name: name, Slug: slug, Type: typ}
		if err := put(tx, bucketLog, id, &l); err != nil {
			return err
		}
		if err := bucket(tx, bucketLogByStep).Put(key2(stepID, id), nil); err != nil {
			return err
		}
		return bucket(tx, bucketLogBySlug).Put(keyName(stepID, slug), itob(id))
	}, func(e emit) { e.log("new", l) })
	if err != nil {
		return Log{}, fmt.Errorf("add log %q: %w", name, err)
	}
	return l, nil
}

// AppendLog appends lines to an unfinished log. lines holds one or more
// whole lines, each ending in "\n"; they are stored as one compressed chunk.
// AppendLog returns the number of the first of them (lines count from 0).
// Callers should batch lines: each call is one transaction.
func (db *DB) AppendLog(logID int64, lines string) (first int64, err error) {
	if !strings.HasSuffix(lines, "\n") {
		return 0, fmt.Errorf("append to log %d: %w", logID, errors.New("lines must end with a newline"))
	}
	n := strings.Count(lines, "\n")
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("append to log %d: %d lines in one batch is too many", logID, n)
	}
	// Compress outside the transaction, so writers do not wait on it.
	chunk := binary.BigEndian.AppendUint32(make([]byte, 0, chunkHeaderSize+len(lines)/4), uint32(n))
	chunk = db.enc.EncodeAll([]byte(lines), chunk)
	var out Log
	err = db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketLog, logID, func(l *Log) error {
			if l.Complete {
				return errors.New("log is finished")
			}
			first = l.NumLines
			l.NumLines += int64(n)
			out = *l
			return bucket(tx, bucketLogChunk).Put(key2(logID, first), chunk)
		})
	}, func(e emit) { e.log("append", out) })
	if err != nil {
		return 0, fmt.Errorf("append to log %d: %w", logID, err)
	}
	if db.onLog != nil {
		db.onLog(len(lines))
	}
	return first, nil
}

// FinishLog marks a log complete; no more lines can be appended.
func (db *DB) FinishLog(logID int64) error {
	var out Log
	err := db.batch(func(tx *bolt.Tx) error {
		return modify(tx, bucketLog, logID, func(l *Log) error {
			l.Complete = true
			out = *l
			return nil
		})
	}, func(e emit) { e.log("finished", out) })
	if err != nil {
		return fmt.Errorf("finish log %d: %w", logID, err)
	}
	return nil
}

// Log returns the log with the given id.
func (db *DB) Log(id int64) (Log, error) {
	var l Log
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		l, err = get[Log](tx, bucketLog, id)
		return err
	})
	if err != nil {
		return Log{}, fmt.Errorf("get log: %w", err)
	}
	return l, nil
}

// Logs lists the logs of a step in the order they were added.
func (db *DB) Logs(stepID int64) ([]Log, error) {
	var ls []Log
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		if bucket(tx, bucketStep).Get(itob(stepID)) == nil {
			return fmt.Errorf("step %d: %w", stepID, ErrNotFound)
		}
		ls, err = getAll[Log](tx, bucketLog, prefixIDs(tx, bucketLogByStep, itob(stepID), false))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	return ls, nil
}

// LogBySlug returns the log of a step with the given slug.
func (db *DB) LogBySlug(stepID int64, slug string) (Log, error) {
	var l Log
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		v := bucket(tx, bucketLogBySlug).Get(keyName(stepID, slug))
		if v == nil {
			return ErrNotFound
		}
		l, err = get[Log](tx, bucketLog, btoi(v))
		return err
	})
	if err != nil {
		return Log{}, fmt.Errorf("get log %q of step %d: %w", slug, stepID, err)
	}
	return l, nil
}

// splitChunk parses a stored chunk's header.
func splitChunk(v []byte) (n int64, data []byte, err error) {
	if len(v) < chunkHeaderSize {
		return 0, nil, errors.New("short log chunk")
	}
	return int64(binary.BigEndian.Uint32(v)), v[chunkHeaderSize:], nil
}

// skipLines returns data without its first n lines.
func skipLines(data []byte, n int64) []byte {
	for ; n > 0; n-- {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		data = data[i+1:]
	}
	return data
}

// LogLines returns lines first to last of a log, inclusive, each with its
// "\n", clamped to the lines that exist; an empty range gives "". Only the
// chunks that hold the range are read, so it is cheap on a long log, and it
// works while the log is still being appended.
func (db *DB) LogLines(logID int64, first, last int64) (string, error) {
	var out []byte
	err := db.bolt.View(func(tx *bolt.Tx) error {
		l, err := get[Log](tx, bucketLog, logID)
		if err != nil {
			return err
		}
		first, last = max(first, 0), min(last, l.NumLines-1)
		if first > last {
			return nil
		}
		prefix := itob(logID)
		c := bucket(tx, bucketLogChunk).Cursor()
		k, v := c.Seek(key2(logID, first))
		if k == nil || !bytes.HasPrefix(k, prefix) || btoi(k[8:]) > first {
			// The chunk holding first starts before it.
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			start := btoi(k[8:])
			if start > last {
				break
			}
			n, data, err := splitChunk(v)
			if err != nil {
				return fmt.Errorf("chunk at line %d: %w", start, err)
			}
			if start+n <= first {
				continue
			}
			// DecodeAll returns new memory, so nothing of the
			// transaction's escapes.
			text, err := db.dec.DecodeAll(data, nil)
			if err != nil {
				return fmt.Errorf("chunk at line %d: %w", start, err)
			}
			text = skipLines(text, first-start)
			firstShown := max(first, start)
			if end := start + n - 1; end > last {
				text = text[:len(text)-len(skipLines(text, last-firstShown+1))]
			}
			out = append(out, text...)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read log %d lines %d-%d: %w", logID, first, last, err)
	}
	return string(out), nil
}

// WriteLog writes every line of a log to w in order, each passed through fn
// first when fn is not nil (fn gets the line with its "\n" and returns what
// to write). It holds at most one chunk in memory, and no transaction while
// it writes to w. Lines appended while it runs are written too.
func (db *DB) WriteLog(logID int64, w io.Writer, fn func(line string) string) error {
	err := db.writeLog(logID, w, fn)
	if err != nil {
		return fmt.Errorf("write log %d: %w", logID, err)
	}
	return nil
}

func (db *DB) writeLog(logID int64, w io.Writer, fn func(line string) string) error {
	err := db.bolt.View(func(tx *bolt.Tx) error {
		_, err := get[Log](tx, bucketLog, logID)
		return err
	})
	if err != nil {
		return err
	}
	var next int64
	var text, buf []byte
	for {
		var chunk []byte
		err := db.bolt.View(func(tx *bolt.Tx) error {
			if v := bucket(tx, bucketLogChunk).Get(key2(logID, next)); v != nil {
				chunk = bytes.Clone(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if chunk == nil {
			return nil
		}
		n, data, err := splitChunk(chunk)
		if err != nil {
			return fmt.Errorf("chunk at line %d: %w", next, err)
		}
		if text, err = db.dec.DecodeAll(data, text[:0]); err != nil {
			return fmt.Errorf("chunk at line %d: %w", next, err)
		}
		out := text
		if fn != nil {
			buf = buf[:0]
			for line := range bytes.Lines(text) {
				buf = append(buf, fn(string(line))...)
			}
			out = buf
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		next += n
	}
}
