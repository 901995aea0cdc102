package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// copyDB is `gbb-master copy-db [--force] [--batch N] FROM_URL TO_URL`:
// buildbot's copy-db, every record of one store copied into another
// (bbolt or PostgreSQL either way), keeping their ids. Interrupted, it is
// run again to go on.
func copyDB(args []string) error {
	fs := flag.NewFlagSet("copy-db", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	force := fs.Bool("force", false, "copy even though a master was seen running on a PostgreSQL source or target within the last minute")
	batch := fs.Int("batch", 500, "rows per committed transaction")
	usage := "usage: gbb-master copy-db [--force] [--batch N] FROM_URL TO_URL\n" +
		"  URL: postgres://… or postgresql://… for PostgreSQL, bbolt:PATH or PATH for a bbolt file\n"
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usage)
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return errHelpShown
		}
		return &exitError{2, fmt.Errorf("copy-db: %w", err)}
	}
	if fs.NArg() != 2 {
		return &exitError{2, errors.New(usage)}
	}
	if *batch <= 0 {
		return &exitError{2, fmt.Errorf("copy-db: --batch %d: must be more than 0", *batch)}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A line every 10 s while a kind is long to copy (the log chunks of a
	// big store).
	last := time.Now()
	progress := func(kind string, rows int64) {
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Printf("%s: %d rows in the target\n", kind, rows)
		}
	}
	_, err := store.CopyDB(ctx, fs.Arg(0), fs.Arg(1), store.CopyOptions{Force: *force, BatchRows: *batch, Out: os.Stdout, Progress: progress})
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted: what is copied stays; run the same command again to go on")
	}
	if err != nil {
		return err
	}
	fmt.Println("copied: every count matches, and the copy passes its check")
	return nil
}
