package store

import (
	"context"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// Upgrade brings the store url names up to this gbb's schema, as a
// master's start does (bbolt: Open's new indexes; PostgreSQL: the schema
// migrations), and says what it holds now. A bbolt file a running master
// holds is refused (ErrLocked); on PostgreSQL the migrations wait for each
// other, so running it beside masters is safe.
func Upgrade(url, basedir string, log *slog.Logger) (string, error) {
	st, err := OpenURL(url, basedir, Options{Logger: log})
	if err != nil {
		return "", err
	}
	defer st.Close()
	switch s := st.(type) {
	case *PG:
		var v int
		if err := s.pool.QueryRow(context.Background(), "SELECT coalesce(max(version), 0) FROM gbb_schema").Scan(&v); err != nil {
			return "", fmt.Errorf("schema version: %w", err)
		}
		return fmt.Sprintf("PostgreSQL store %s: schema version %d, the latest this gbb knows", s.url, v), nil
	case *DB:
		var v string
		err := s.bolt.View(func(tx *bolt.Tx) error {
			v = string(tx.Bucket([]byte(bucketMeta)).Get([]byte("version")))
			return nil
		})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("bbolt store %s: format version %s, indexes up to date", s.path, v), nil
	}
	return "", fmt.Errorf("store of type %T", st)
}
