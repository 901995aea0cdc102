package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/gbb-ci/gbb/pkg/store"
)

// upgradeMaster is buildbot's upgrade-master: it checks the config, then
// brings the store up to this gbb's schema (which start also does, so
// running it is never required) and says so.
func upgradeMaster(args []string) error {
	fs := flag.NewFlagSet("upgrade-master", flag.ContinueOnError)
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return &exitError{1, badConfig(dir, "upgrade-master", err)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	what, err := store.Upgrade(cfg.DB.URL, dir, log)
	if err != nil {
		return fmt.Errorf("upgrade-master: %w", err)
	}
	fmt.Println(what)
	return nil
}
