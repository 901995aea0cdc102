package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gbb-ci/gbb/internal/daemon"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/master"
)

// version is set by the build: -ldflags "-X main.version=...".
var version = "dev"

const (
	configFile = "master.toml"
	logFile    = "master.log"
	pidFile    = "master.pid"
	// readyKeyFile holds the running master's secret of this start (see
	// status), readable by its user only.
	readyKeyFile = "master.readykey"
	// startTimeout bounds how long start waits for the master to be up.
	startTimeout = 30 * time.Second
	stopTimeout  = 60 * time.Second
	// cleanStopTimeout is how long `stop --clean` waits for the running
	// builds by default before it stops the master at once.
	cleanStopTimeout = 30 * time.Minute
	// reopenTimeout bounds how long reopen-logs waits for the master to
	// write to the new log file.
	reopenTimeout = 30 * time.Second
	// reconfigTimeout bounds how long reconfig waits for the master's answer.
	reconfigTimeout = 60 * time.Second
	// The log messages reconfig watches for.
	msgReconfigApplied = master.MsgReconfigApplied
	msgReconfigRefused = "reconfig refused: the running config stays"
)

// oneDir parses flags and exactly one DIR argument.
func oneDir(fs *flag.FlagSet, args []string) (string, error) {
	fs.SetOutput(io.Discard)
	parse := func(args []string) error {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			// -h, --help: the command's usage on stdout, exit 0.
			fmt.Printf("usage: gbb-master %s [options] DIR\n", fs.Name())
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return errHelpShown
		}
		if err != nil {
			return &exitError{2, fmt.Errorf("%s: %w", fs.Name(), err)}
		}
		return nil
	}
	if err := parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 1 {
		// Options after DIR (checkconfig DIR --dump), as buildbot takes
		// them: parse what follows DIR too.
		dir := fs.Arg(0)
		if err := parse(fs.Args()[1:]); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			return filepath.Abs(dir)
		}
		return "", &exitError{2, fmt.Errorf("%s: expected one DIR argument, got %d", fs.Name(), fs.NArg()+1)}
	}
	if fs.NArg() != 1 {
		return "", &exitError{2, fmt.Errorf("%s: expected one DIR argument, got %d", fs.Name(), fs.NArg())}
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return "", err
	}
	return dir, nil
}

func createMaster(args []string) error { return createMasterTo(os.Stdout, args) }

// createMasterTo is create-master, telling out what it did.
func createMasterTo(out io.Writer, args []string) error {
	fs := flag.NewFlagSet("create-master", flag.ContinueOnError)
	tlsNames := fs.String("tls-names", "", "comma-separated DNS names and IP addresses workers dial, for the worker port's certificate (as tls_names in master.toml)")
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	var names []string
	for n := range strings.SplitSeq(*tlsNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create-master: %w", err)
	}
	sample := filepath.Join(dir, configFile+".sample")
	if err := os.WriteFile(sample, []byte(config.Sample), 0o644); err != nil {
		return fmt.Errorf("create-master: %w", err)
	}
	// tls = "auto" (the sample's): the master's own CA, and the worker
	// port's certificate, whose fingerprint workers pin. A CA made before
	// is kept (its workers pin it).
	did := "made"
	if master.AutoCAExists(dir) {
		did = "kept"
	}
	fp, err := master.EnsureAutoTLS(dir, config.GRPC{TLS: config.GRPCTLS{Mode: config.TLSAuto, Names: names}}, nil)
	if err != nil {
		return fmt.Errorf("create-master: %w", err)
	}
	fmt.Fprintf(out, "created %s\ncopy it to %s, edit it, then: gbb-master checkconfig %s\n",
		sample, filepath.Join(dir, configFile), dir)
	fmt.Fprintf(out, "worker TLS (tls = \"auto\"): %s the master's CA in %s\n"+
		"its fingerprint, for each worker: gbb-worker create-worker -tls-fingerprint %s DIR MASTER NAME PASSWORD\n",
		did, filepath.Join(dir, config.AutoTLSDir), fp)
	return nil
}

func loadConfig(dir string) (*config.Config, error) {
	return master.LoadConfig(filepath.Join(dir, configFile))
}

// badConfig is the error of a command (what says "not started", ...)
// that cannot load the config in dir: a missing master.toml is said as
// such, with how to make one; other errors are printed on stderr, file,
// line and key, and summed up.
func badConfig(dir, what string, err error) error {
	path := filepath.Join(dir, configFile)
	if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
		return fmt.Errorf("%s: %s does not exist (gbb-master create-master %s writes master.toml.sample; copy it to master.toml and edit it)", what, path, dir)
	}
	fmt.Fprintln(os.Stderr, err)
	return fmt.Errorf("%s: config has errors", what)
}

func checkConfig(args []string) error {
	fs := flag.NewFlagSet("checkconfig", flag.ContinueOnError)
	dump := fs.Bool("dump", false, "print the expanded config (includes merged, factories and matrices expanded) as TOML on stdout")
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return &exitError{1, badConfig(dir, "checkconfig", err)}
	}
	if *dump {
		out, err := config.Dump(filepath.Join(dir, configFile))
		if err != nil {
			return &exitError{1, badConfig(dir, "checkconfig", err)}
		}
		for _, w := range cfg.Warnings() {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		_, err = os.Stdout.Write(out)
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	fmt.Println("Config file is good -- no errors found")
	return nil
}

func start(args []string) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	nodaemon := fs.Bool("nodaemon", false, "run in the foreground, logging to stderr too")
	child := fs.Bool("daemonized", false, "internal: started by 'start' in the background")
	logFormat := fs.String("log-format", "", `master.log's format: "text" (key=value lines) or "json" (one JSON object a line); default: log_format in master.toml, else text`)
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	if *logFormat != "" {
		if err := config.CheckLogFormat(*logFormat); err != nil {
			return &exitError{2, fmt.Errorf("--log-format: %w", err)}
		}
	}
	if !*nodaemon {
		// Check first, so that a bad config is printed here, not only logged,
		// and its warnings (an expired certificate, say) too.
		cfg, err := loadConfig(dir)
		if err != nil {
			return badConfig(dir, "not started", err)
		}
		for _, w := range cfg.Warnings() {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		childArgs := []string{"start", "--nodaemon", "--daemonized"}
		if *logFormat != "" {
			childArgs = append(childArgs, "--log-format", *logFormat)
		}
		pid, err := daemon.Start(append(childArgs, dir), filepath.Join(dir, logFile), startTimeout)
		if err != nil {
			return fmt.Errorf("master did not start: %w", err)
		}
		fmt.Printf("gbb-master started in %s (pid %d); log: %s\n", dir, pid, filepath.Join(dir, logFile))
		return nil
	}
	err = runForeground(dir, !*child, *logFormat)
	if err != nil && *child {
		// runForeground logged it in master.log's format and told the
		// parent (daemon.Fail), which prints it on the terminal.
		return loggedError{err}
	}
	return err
}

// runForeground runs the master until SIGINT or SIGTERM. SIGHUP reconfigs,
// SIGUSR1 stops cleanly, SIGUSR2 reopens master.log.
//
// logFormat is --log-format; "" means master.toml's log_format.
func runForeground(dir string, toStderr bool, logFormat string) error {
	// Under daemon.Start (not toStderr), stdout and stderr are the log
	// file too, and follow it when it is reopened.
	lf, err := daemon.OpenLog(filepath.Join(dir, logFile), !toStderr)
	if err != nil {
		if !toStderr {
			// Our stderr is the log file that the parent opened: the
			// error goes there in the format asked (master.toml's is
			// unread yet), as a log line.
			slog.New(logHandler(os.Stderr, logFormat)).Error("cannot open the log file", "err", err)
		}
		daemon.Fail(err)
		return err
	}
	defer lf.Close()
	var w io.Writer = lf
	if toStderr {
		w = io.MultiWriter(lf, os.Stderr)
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		log := slog.New(logHandler(w, logFormat))
		log.Error("config has errors", "err", err)
		daemon.Fail(err)
		return errors.New("config has errors")
	}
	log := slog.New(logHandler(w, cmp.Or(logFormat, cfg.LogFormat)))
	// The signals are ours before the pid file names us: a reconfig's
	// SIGHUP must not find the default action (exit).
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	// Said at once, so that a slow stop shows in master.log.
	defer context.AfterFunc(ctx, func() { log.Info("stopping", "cause", context.Cause(ctx)) })()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGUSR2 (reopen-logs, newsyslog) reopens master.log.
	reopen := make(chan os.Signal, 1)
	signal.Notify(reopen, daemon.ReopenSignal)
	defer signal.Stop(reopen)
	pidPath := filepath.Join(dir, pidFile)
	if err := daemon.WritePID(pidPath); err != nil {
		log.Error("cannot write the pid file", "err", err)
		daemon.Fail(err)
		return err
	}
	defer os.Remove(pidPath)
	// The key of this start, with which /readyz proves to `status` that
	// this master answers on the web port, not another program.
	readyKey, err := writeReadyKey(filepath.Join(dir, readyKeyFile))
	if err != nil {
		log.Error("cannot write the ready key", "err", err)
		daemon.Fail(err)
		return err
	}
	defer os.Remove(filepath.Join(dir, readyKeyFile))
	// SIGUSR1 (`stop --clean`) is buildbot's clean shutdown; SIGTERM or
	// SIGINT then stops at once.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	master.Version = version
	m := master.New(dir, cfg, log)
	m.SetReadyKey(readyKey)
	errc := make(chan error, 1)
	go func() {
		errc <- m.Run(ctx, func(a master.Addrs) {
			log.Info("gbb-master is up", "version", version, "basedir", dir)
			daemon.Ready()
		})
	}()
	for {
		select {
		case err := <-errc:
			if errors.Is(err, master.ErrDeclaredDead) && ctx.Err() == nil {
				// Its builds ran again elsewhere; it registers afresh
				// and takes workers and requests again.
				log.Warn("starting again: the other masters sharing the store presumed this one dead", "err", err)
				go func() { errc <- m.Run(ctx, nil) }()
				continue
			}
			if err != nil {
				log.Error("master failed", "err", err)
				daemon.Fail(err)
			}
			return err
		case <-hup:
			if err := m.Reconfig(filepath.Join(dir, configFile)); err != nil {
				log.Error(msgReconfigRefused, "err", err)
			}
		case <-reopen:
			if err := lf.Reopen(); err != nil {
				log.Error("cannot reopen the log file; still writing to the old one", "path", lf.Path(), "err", err)
			} else {
				log.Info(daemon.MsgLogReopened, "path", lf.Path())
			}
		case <-usr1:
			if !m.StopClean() {
				log.Info("clean shutdown already under way; SIGTERM or SIGINT stops at once")
			}
		}
	}
}

// stopFlags are the flags of stop and restart.
type stopFlags struct {
	clean   bool
	timeout time.Duration
}

func (f *stopFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.clean, "clean", false, "stop cleanly: start no new build, wait for the running ones, then stop")
	fs.DurationVar(&f.timeout, "timeout", cleanStopTimeout, "with --clean: how long to wait for the running builds before stopping at once (they then run again after the next start)")
}

func stop(args []string) error {
	var sf stopFlags
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	sf.register(fs)
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	if err := stopMaster(dir, sf); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

// stopMaster stops the master of dir: at once (SIGTERM: running builds end
// RETRY and run again after the next start), or cleanly as buildbot's
// `stop --clean` (SIGUSR1), then at once after sf.timeout.
func stopMaster(dir string, sf stopFlags) error {
	pidPath := filepath.Join(dir, pidFile)
	if !sf.clean {
		if err := daemon.Stop(pidPath, stopTimeout); err != nil {
			return err
		}
		fmt.Println("gbb-master stopped")
		return nil
	}
	if sf.timeout <= 0 {
		return &exitError{2, fmt.Errorf("--timeout must be positive, got %s", sf.timeout)}
	}
	fmt.Printf("gbb-master: stopping cleanly: no new build starts, waiting up to %s for the running ones (see %s); 'gbb-master stop %s' stops at once\n",
		sf.timeout, filepath.Join(dir, logFile), dir)
	logPath := filepath.Join(dir, logFile)
	var from int64
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	err := daemon.StopWith(pidPath, syscall.SIGUSR1, sf.timeout)
	if err == nil {
		if logSays(logPath, from, master.MsgCleanDone) {
			fmt.Println("gbb-master stopped cleanly")
		} else {
			fmt.Println("gbb-master stopped, not cleanly (another stop or signal came first): builds it was running will run again after the next start")
		}
		return nil
	}
	if !errors.Is(err, daemon.ErrStillRunning) {
		return err
	}
	fmt.Printf("gbb-master: builds still running after %s: stopping at once; they will run again after the next start\n", sf.timeout)
	if err := daemon.Stop(pidPath, stopTimeout); err != nil {
		return err
	}
	fmt.Println("gbb-master stopped")
	return nil
}

func restart(args []string) error {
	var sf stopFlags
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	sf.register(fs)
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	if _, err := loadConfig(dir); err != nil {
		return badConfig(dir, "not restarted", err)
	}
	if err := stopMaster(dir, sf); err != nil {
		fmt.Fprintln(os.Stderr, "gbb-master: stop:", err)
	}
	return start([]string{dir})
}

func reconfig(args []string) error {
	dir, err := oneDir(flag.NewFlagSet("reconfig", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	// A config with errors is printed here, file, line and key; the
	// running master is still asked, as buildbot's reconfig does, so that
	// master.log records the refusal too.
	_, cfgErr := loadConfig(dir)
	refused := errors.New("not reconfigured: config has errors; the running config stays")
	if cfgErr != nil {
		fmt.Fprintln(os.Stderr, cfgErr)
	}
	pid, err := daemon.ReadPID(filepath.Join(dir, pidFile))
	if err != nil {
		if cfgErr != nil {
			return refused
		}
		return fmt.Errorf("reconfig: %w", err)
	}
	// As buildbot's reconfig, watch the log for the master's verdict.
	logPath := filepath.Join(dir, logFile)
	var from int64
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		if cfgErr != nil {
			return refused
		}
		return fmt.Errorf("reconfig: signal pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(reconfigTimeout)
	for time.Now().Before(deadline) {
		verdict, line := reconfigVerdict(logPath, from)
		switch verdict {
		case "applied":
			fmt.Println("Reconfiguration appears to have completed successfully")
			return nil
		case "refused":
			if cfgErr != nil {
				return refused // its errors are printed above
			}
			fmt.Fprintln(os.Stderr, line)
			return errors.New("reconfig refused: the running config stays")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cfgErr != nil {
		return refused
	}
	return fmt.Errorf("sent SIGHUP to gbb-master (pid %d) but saw no verdict in %s within %s", pid, logPath, reconfigTimeout)
}

// logSays reports whether the log written since offset from has a line
// containing msg.
func logSays(path string, from int64, msg string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return false
	}
	b, err := io.ReadAll(f)
	return err == nil && strings.Contains(string(b), msg)
}

// reconfigVerdict reads the log written since offset from for the master's
// answer to a reconfig: "applied", "refused" (with its line) or "".
func reconfigVerdict(path string, from int64) (string, string) {
	f, err := os.Open(path)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "", ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, msgReconfigApplied):
			return "applied", line
		case strings.Contains(line, msgReconfigRefused):
			return "refused", line
		}
	}
	return "", ""
}

func reopenLogs(args []string) error {
	dir, err := oneDir(flag.NewFlagSet("reopen-logs", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, logFile)
	if err := daemon.ReopenLogs(filepath.Join(dir, pidFile), path, reopenTimeout); err != nil {
		return fmt.Errorf("reopen-logs: %w", err)
	}
	fmt.Printf("gbb-master writes to %s\n", path)
	return nil
}

// logHandler returns the handler of master.log for format (config's
// LogFormat values; "" is text).
func logHandler(w io.Writer, format string) slog.Handler {
	if format == config.LogFormatJSON {
		return slog.NewJSONHandler(w, nil)
	}
	return slog.NewTextHandler(w, nil)
}
