package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// compactTxSize is how many bytes Compact copies per transaction.
const compactTxSize = 64 << 20

// CompactOptions configures Compact.
type CompactOptions struct {
	Timeout    time.Duration // how long Compact waits for the file lock; zero means 1s
	KeepBackup bool          // keep the old file as PATH.bak; by default it is removed once the new one is in place
}

// CompactResult says what Compact did.
type CompactResult struct {
	Before, After int64  // sizes of the file, in bytes
	Backup        string // the old file, when kept
}

// Compact rewrites the store at path into a new file holding only its live
// pages, since bbolt never shrinks a file: space freed by DeleteLogsBefore
// and DeleteBuildsBefore is given back only this way. No master may use the
// store meanwhile: Compact holds its lock throughout and fails with an error
// wrapping ErrLocked if it cannot get it. The copy is written next to path,
// checked (Check, and every bucket holds as many keys as before), and only
// then put in place by a rename, so that path always holds a whole store;
// the old file is linked as PATH.bak first and is removed at the end unless
// opts.KeepBackup. On error path is unchanged.
func Compact(path string, opts CompactOptions) (CompactResult, error) {
	res, err := compact(path, opts)
	if err != nil {
		return CompactResult{}, fmt.Errorf("compact %s: %w", path, err)
	}
	return res, nil
}

func compact(path string, opts CompactOptions) (res CompactResult, err error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	fi, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.Before = fi.Size()
	// Opened writable, so that the lock is exclusive: no master can open
	// the old file until the new one has replaced it.
	src, err := bolt.Open(path, 0, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return res, fmt.Errorf("a master is probably running on it (stop it first): %w", ErrLocked)
		}
		return res, err
	}
	defer src.Close()

	tmp := path + ".compact"
	os.Remove(tmp) // left by an interrupted run
	defer os.Remove(tmp)
	dst, err := bolt.Open(tmp, fi.Mode().Perm(), &bolt.Options{Timeout: timeout})
	if err != nil {
		return res, err
	}
	if err := bolt.Compact(dst, src, compactTxSize); err != nil {
		dst.Close()
		return res, fmt.Errorf("copy: %w", err)
	}
	if err := dst.Close(); err != nil {
		return res, err
	}
	if err := verifyCompacted(src, tmp); err != nil {
		return res, fmt.Errorf("the compacted copy is bad, the store is unchanged: %w", err)
	}

	backup := path + ".bak"
	os.Remove(backup)
	if err := os.Link(path, backup); err != nil {
		return res, fmt.Errorf("keep a backup: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(backup)
		return res, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	if opts.KeepBackup {
		res.Backup = backup
	} else if err := os.Remove(backup); err != nil {
		return res, fmt.Errorf("remove the backup: %w", err)
	}
	return res, nil
}

// verifyCompacted checks the store in file tmp and that each of its buckets
// holds as many keys as in src.
func verifyCompacted(src *bolt.DB, tmp string) error {
	db, err := Open(tmp, Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		return err
	}
	return src.View(func(stx *bolt.Tx) error {
		return db.bolt.View(func(dtx *bolt.Tx) error {
			return stx.ForEach(func(name []byte, sb *bolt.Bucket) error {
				nb := dtx.Bucket(name)
				if nb == nil {
					return fmt.Errorf("bucket %s missing", name)
				}
				if s, d := sb.Stats().KeyN, nb.Stats().KeyN; s != d {
					return fmt.Errorf("bucket %s: %d keys, was %d", name, d, s)
				}
				if s, d := sb.Sequence(), nb.Sequence(); s != d {
					return fmt.Errorf("bucket %s: sequence %d, was %d", name, d, s)
				}
				return nil
			})
		})
	})
}
