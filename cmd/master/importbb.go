package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gbb-ci/gbb/internal/bbimport"
)

// importBuildbot is `gbb-master import-buildbot [-o FILE] [-python PATH] [-timeout DURATION]
// master.cfg`: the TOML of a buildbot master.cfg, on stdout or in FILE.
func importBuildbot(args []string) error {
	fs := flag.NewFlagSet("import-buildbot", flag.ContinueOnError)
	out := fs.String("o", "", "write the TOML to `FILE` (mode 0600: it holds passwords) instead of stdout")
	python := fs.String("python", bbimport.DefaultPython, "the Python interpreter buildbot is installed for")
	timeout := fs.Duration("timeout", bbimport.DefaultTimeout, "stop buildbot's loader after `DURATION`")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() != 1 {
		return &exitError{2, errors.New("usage: gbb-master import-buildbot [-o FILE] [-python PATH] [-timeout DURATION] master.cfg")}
	}
	if *timeout <= 0 {
		return &exitError{2, fmt.Errorf("-timeout %v: the loader's time limit must be more than 0", *timeout)}
	}
	if *out != "" {
		if same, err := sameFile(*out, fs.Arg(0)); err != nil {
			return &exitError{1, err}
		} else if same {
			return &exitError{2, fmt.Errorf("-o %s is the master.cfg itself: write the TOML to another file", *out)}
		}
	}
	// SIGTERM and SIGHUP (a closed terminal) as SIGINT: the loader's
	// process group is killed either way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// master.cfg's prints go to stderr, never into the TOML.
	raw, err := bbimport.LoadWith(ctx, fs.Arg(0), bbimport.Options{Python: *python, Timeout: *timeout, Output: os.Stderr})
	if err != nil {
		var le *bbimport.LoadError
		if errors.As(err, &le) {
			return &exitError{1, fmt.Errorf("buildbot could not load %s:\n%s", fs.Arg(0), le.Msg)}
		}
		return &exitError{1, err}
	}
	res := bbimport.Convert(raw)
	if *out != "" {
		// 0600 even when the file was there before: it holds passwords.
		if err := os.WriteFile(*out, []byte(res.TOML), 0o600); err != nil {
			return &exitError{1, err}
		}
		if err := os.Chmod(*out, 0o600); err != nil {
			return &exitError{1, err}
		}
	} else if _, err := os.Stdout.WriteString(res.TOML); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "import-buildbot: %d untranslatable item(s), marked \"# import-buildbot:\" in the output\n", res.Untranslatable)
	return nil
}

// sameFile reports whether out names the file in (out may not exist yet).
func sameFile(out, in string) (bool, error) {
	a, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b, err := os.Stat(in)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}
