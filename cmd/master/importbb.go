package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/gbb-ci/gbb/internal/bbimport"
)

// importBuildbot is `gbb-master import-buildbot [-o FILE] [-python PATH]
// master.cfg`: the TOML of a buildbot master.cfg, on stdout or in FILE.
func importBuildbot(args []string) error {
	fs := flag.NewFlagSet("import-buildbot", flag.ContinueOnError)
	out := fs.String("o", "", "write the TOML to `FILE` (mode 0600: it holds passwords) instead of stdout")
	python := fs.String("python", bbimport.DefaultPython, "the Python interpreter buildbot is installed for")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() != 1 {
		return &exitError{2, errors.New("usage: gbb-master import-buildbot [-o FILE] [-python PATH] master.cfg")}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	raw, err := bbimport.Load(ctx, *python, fs.Arg(0))
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
