package main

import (
	"errors"
	"fmt"
	"os"
)

const usage = `usage: gbb-master COMMAND [options] DIR

commands:
  create-master [-tls-names NAMES] DIR
                           make DIR a master basedir (writes master.toml.sample, and
                           the worker port's CA and certificate; prints the CA's fingerprint)
  checkconfig [--dump] DIR check DIR/master.toml; exit 1 on any error; --dump prints
                           it expanded (includes, factories, matrices) as TOML
  start [--nodaemon] [--log-format text|json] DIR
                           start the master (in the background unless --nodaemon)
  stop [--clean [--timeout D]] DIR
                           stop the master running in DIR: at once (running builds
                           run again after the next start), or with --clean as
                           buildbot's: no new build starts, the running ones finish
                           (up to --timeout, default 30m), then the master stops
  restart [--clean [--timeout D]] DIR  stop, then start
  status [--wait D] DIR    ask the running master's /healthz and /readyz; exit 0 only
                           when it is ready (with --wait, wait up to D for it)
  reconfig DIR             check the config, then make the running master reload it
  reopen-logs DIR          make the running master reopen DIR/master.log (after log
                           rotation; it sends SIGUSR2)
  upgrade-master DIR       check the config and bring the store up to this gbb's schema
                           (start does it too; on PostgreSQL safe beside running masters)
  compactdb [--keep-backup] DIR  shrink the stopped master's state.db (after the janitor deleted much)
  copy-db [--force] [--batch N] FROM_URL TO_URL
                           copy every record of a stopped master's store into another,
                           bbolt (bbolt:PATH) or PostgreSQL (postgres://...), ids kept;
                           run it again to go on after an interruption
  sendchange [options] [FILE...]  post a change to a master's base change hook (sendchange -h)
  hashpw [-cost N]         read a password (stdin, or the terminal without echo) and print its bcrypt hash
  new-token [-groups G,...] [-actions A,...|none] [-builders P,...] NAME
                           make an API token: print it once, and its [[www.auth.tokens]] table
  hash-token               read an API token (stdin) and print its token_sha256
  import-buildbot [-o FILE] [-python PATH] [-timeout DURATION] master.cfg
                           load a buildbot master.cfg with buildbot's own loader
                           (buildbot must be installed; PATH: its Python, default
                           /usr/bin/python3; DURATION: default 2m) and print it
                           as master.toml
  version                  print the version
`

// errHelpShown is returned by a command that printed its usage for -h:
// main exits 0 saying nothing more.
var errHelpShown = errors.New("help shown")

// exitError carries an exit code to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// loggedError is an error that is in master.log already, in its format
// (exit 1): main prints nothing, since a daemonized master's stderr is
// master.log and a plain "gbb-master: ..." line would break a JSON log.
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }

func main() {
	err := run(os.Args[1:])
	if err == nil || errors.Is(err, errHelpShown) {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if errors.As(err, new(loggedError)) {
		os.Exit(code)
	}
	fmt.Fprintln(os.Stderr, "gbb-master:", err)
	os.Exit(code)
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return &exitError{code: 2, err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "create-master":
		return createMaster(rest)
	case "checkconfig":
		return checkConfig(rest)
	case "start":
		return start(rest)
	case "stop":
		return stop(rest)
	case "status":
		return status(rest)
	case "restart":
		return restart(rest)
	case "reconfig":
		return reconfig(rest)
	case "reopen-logs":
		return reopenLogs(rest)
	case "sendchange":
		return sendchange(rest)
	case "upgrade-master":
		return upgradeMaster(rest)
	case "compactdb":
		return compactDB(rest)
	case "copy-db":
		return copyDB(rest)
	case "hashpw":
		return hashpw(rest)
	case "new-token":
		return newToken(rest)
	case "hash-token":
		return hashTokenCmd(rest)
	case "import-buildbot":
		return importBuildbot(rest)
	case "version", "--version", "-version":
		fmt.Println("gbb-master", version)
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return &exitError{code: 2, err: fmt.Errorf("unknown command %q", cmd)}
}
