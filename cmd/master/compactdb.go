package main

import (
	"flag"
	"fmt"

	"github.com/gbb-ci/gbb/pkg/store"
)

// compactDB rewrites the stopped master's state.db into a smaller file:
// bbolt never shrinks its file, so the space the janitor frees is given
// back only this way.
func compactDB(args []string) error {
	fs := flag.NewFlagSet("compactdb", flag.ContinueOnError)
	keep := fs.Bool("keep-backup", false, "keep the old file as state.db.bak")
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return fmt.Errorf("compactdb: %w", err)
	}
	if !cfg.DB.IsBolt() {
		return fmt.Errorf("compactdb: [db] url is %s: compactdb rewrites a bbolt file; PostgreSQL's autovacuum (or VACUUM FULL) gives space back there", cfg.DB.Redacted())
	}
	res, err := store.Compact(cfg.DB.BoltPath(dir), store.CompactOptions{KeepBackup: *keep})
	if err != nil {
		return fmt.Errorf("compactdb: %w", err)
	}
	fmt.Printf("compacted %s: %d bytes, now %d\n", cfg.DB.BoltPath(dir), res.Before, res.After)
	if res.Backup != "" {
		fmt.Printf("the old file is kept as %s\n", res.Backup)
	}
	return nil
}
