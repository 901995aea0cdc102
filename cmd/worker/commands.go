package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/daemon"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/worker"
)

const usage = `usage:
  gbb-worker create-worker [TLS FLAGS] DIR MASTER NAME PASSWORD
  gbb-worker start [--nodaemon] [--log-format text|json] DIR
  gbb-worker stop DIR
  gbb-worker restart DIR       (stop, then start; worker.toml is checked first)
  gbb-worker reopen-logs DIR   (after log rotation; it sends SIGUSR2)
  gbb-worker -master HOST:PORT[,HOST:PORT...] -name NAME -password PASS [-basedir DIR] [-log-format text|json] [TLS FLAGS]
MASTER (and -master) may list several masters, comma-separated: the worker
serves the first that answers, and moves to the next when it goes away. An
entry HOST:PORT#sha256:HEX pins that master's CA instead of -tls-fingerprint,
-tls-ca or -tls; the other TLS flags apply to every master.
TLS flags (none: plaintext, for a master on loopback or a private link):
  -tls-fingerprint sha256:HEX   pin the master's CA (create-master prints it)
  -tls-ca FILE                  trust the CAs in FILE
  -tls                          trust the system's roots (a public certificate)
  -tls-server-name NAME         the name the master's certificate must hold
                                (default: the host of each MASTER)
  -tls-cert FILE -tls-key FILE  a client certificate whose CN is NAME, for a
                                master with client_ca_file (PASSWORD may be "")
`

// Timings of start and stop.
const (
	startTimeout = 30 * time.Second // the daemon must be up (connected or trying) by then
	readyAfter   = 10 * time.Second // a first attempt still hanging by then counts as trying
	stopTimeout  = 60 * time.Second // SIGTERM to exit: the running steps finish first
	// reopenTimeout bounds how long reopen-logs waits for the worker to
	// write to the new log file.
	reopenTimeout = 30 * time.Second
)

// run runs the command line args and returns the exit code; stops stops
// a running worker.
func run(stops *stopSignals, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "create-worker":
			return createWorker(args[1:], stdout, stderr)
		case "start":
			return start(stops, args[1:], stdout, stderr)
		case "stop":
			return stop(args[1:], stdout, stderr)
		case "restart":
			return restart(stops, args[1:], stdout, stderr)
		case "reopen-logs":
			return reopenLogs(args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		}
		// Not a flag of the direct mode: a command we do not have.
		if !strings.HasPrefix(args[0], "-") {
			fmt.Fprint(stderr, usage)
			fmt.Fprintf(stderr, "gbb-worker: unknown command %q\n", args[0])
			return 2
		}
	}
	return direct(stops, args, stderr)
}

// restart stops the worker running in DIR, if any, and starts it, as
// buildbot-worker's restart does. worker.toml is read first: a worker
// that could not start again is left running.
func restart(stops *stopSignals, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return fail(stderr, err)
	}
	if _, err := loadConfig(dir); err != nil {
		return fail(stderr, fmt.Errorf("not restarted: %w", err))
	}
	if err := daemon.Stop(filepath.Join(dir, "worker.pid"), stopTimeout); err != nil {
		fmt.Fprintf(stderr, "gbb-worker: stop: %v\n", err)
	} else {
		fmt.Fprintln(stdout, "gbb-worker stopped")
	}
	return start(stops, []string{dir}, stdout, stderr)
}

// absPath is p made absolute ("" stays ""), for worker.toml: create-worker
// is run from anywhere.
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// loopbackMaster reports whether the master's address (host:port) is a
// loopback address or localhost.
func loopbackMaster(master string) bool {
	host, _, err := net.SplitHostPort(master)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "gbb-worker: %v\n", err)
	return 1
}

// tlsFlags adds the TLS flags to fs.
func tlsFlags(fs *flag.FlagSet) *protocol.ClientTLS {
	var t protocol.ClientTLS
	fs.StringVar(&t.Fingerprint, "tls-fingerprint", "", "pin the master's CA: `sha256:HEX`, as create-master prints it")
	fs.StringVar(&t.CAFile, "tls-ca", "", "trust the CAs in `FILE` (PEM)")
	fs.BoolVar(&t.System, "tls", false, "TLS, trusting the system's roots")
	fs.StringVar(&t.ServerName, "tls-server-name", "", "the `NAME` the master's certificate must hold (default: the host of -master)")
	fs.StringVar(&t.CertFile, "tls-cert", "", "a client certificate `FILE` (PEM), CN the worker's name")
	fs.StringVar(&t.KeyFile, "tls-key", "", "the client certificate's key `FILE` (PEM)")
	return &t
}

func createWorker(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("create-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	t := tlsFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	args = fs.Args()
	if len(args) != 4 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	dir := args[0]
	if args[3] == "" && t.CertFile == "" {
		return fail(stderr, errors.New("create-worker: PASSWORD is empty: give one, or a client certificate (-tls-cert, -tls-key)"))
	}
	entries, err := parseMasters(splitMasters(args[1]))
	if err != nil {
		return fail(stderr, fmt.Errorf("create-worker: MASTER: %w", err))
	}
	if _, err := masterAddrs(entries, *t); err != nil {
		return fail(stderr, fmt.Errorf("create-worker: %w", err))
	}
	master, masters := args[1], []string(nil)
	if len(entries) > 1 {
		master = ""
		for _, e := range entries {
			m := e.Addr
			if e.Fingerprint != "" {
				m += "#" + e.Fingerprint
			}
			masters = append(masters, m)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(stderr, err)
	}
	if err := writeConfig(dir, fileConfig{Master: master, Masters: masters, Name: args[2], Password: args[3],
		TLS: t.System && t.Fingerprint == "" && t.CAFile == "", TLSFinger: t.Fingerprint, TLSCAFile: absPath(t.CAFile),
		TLSServerName: t.ServerName, TLSCertFile: absPath(t.CertFile), TLSKeyFile: absPath(t.KeyFile)}); err != nil {
		return fail(stderr, err)
	}
	if err := writeInfo(dir); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "worker created in %s\nplease edit %s and %s, then run: gbb-worker start %s\n",
		dir, filepath.Join(dir, "info", "admin"), filepath.Join(dir, "info", "host"), dir)
	return 0
}

func start(stops *stopSignals, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodaemon := fs.Bool("nodaemon", false, "run in the foreground")
	// Set by start itself for the daemon, whose stderr is worker.log.
	child := fs.Bool("daemon-child", false, "internal: run as the daemon started by start")
	logFormat := fs.String("log-format", "", `worker.log's format: "text" or "json"; default: log_format in worker.toml, else text`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *logFormat != "" {
		if err := checkLogFormat(*logFormat); err != nil {
			fmt.Fprintln(stderr, "gbb-worker: --log-format:", err)
			return 2
		}
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return fail(stderr, err)
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	logPath := filepath.Join(dir, "worker.log")
	pidPath := filepath.Join(dir, "worker.pid")

	if !*nodaemon {
		childArgs := []string{"start", "--nodaemon", "--daemon-child"}
		if *logFormat != "" {
			childArgs = append(childArgs, "--log-format", *logFormat)
		}
		pid, err := daemon.Start(append(childArgs, dir), logPath, startTimeout)
		if err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintf(stdout, "gbb-worker started (pid %d), logging to %s\n", pid, logPath)
		return 0
	}

	// The daemon's stdout and stderr are worker.log already (daemon.Start
	// opened it): it logs there only, and they follow the file when it is
	// reopened. In the foreground, the log goes to stderr too.
	lf, err := daemon.OpenLog(logPath, *child)
	if err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	defer lf.Close()
	var logOut io.Writer = lf
	if !*child {
		logOut = io.MultiWriter(stderr, lf)
	}
	log := slog.New(logHandler(logOut, cmp.Or(*logFormat, cfg.LogFormat)))
	// SIGUSR2 (reopen-logs, newsyslog) reopens worker.log. Ours before
	// the pid file names us: its default action is to exit.
	reopen := make(chan os.Signal, 1)
	signal.Notify(reopen, daemon.ReopenSignal)
	defer signal.Stop(reopen)
	reopened := make(chan struct{})
	defer func() { <-reopened }()
	reopenCtx, stopReopen := context.WithCancel(context.Background())
	defer stopReopen()
	go func() {
		defer close(reopened)
		for {
			select {
			case <-reopenCtx.Done():
				return
			case <-reopen:
				if err := lf.Reopen(); err != nil {
					log.Error("cannot reopen the log file; still writing to the old one", "path", logPath, "err", err)
				} else {
					log.Info(daemon.MsgLogReopened, "path", logPath)
				}
			}
		}
	}()
	// Before the pid file: a second worker on dir must not replace the
	// first's worker.pid, nor kill its commands (ReapOrphans).
	lock, err := worker.LockBasedir(dir)
	if err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	defer lock.Release()
	if err := daemon.WritePID(pidPath); err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	defer os.Remove(pidPath)
	info, err := workerInfo(dir)
	if err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	masters, err := cfg.masterAddrs(dir)
	if err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	return runWorker(stops, protocol.ClientConfig{
		Masters:          masters,
		Name:             cfg.Name,
		Password:         cfg.Password,
		Info:             info,
		KeepaliveTime:    time.Duration(cfg.Keepalive),
		KeepaliveTimeout: time.Duration(cfg.KeepaliveTimeout),
		MinBackoff:       time.Duration(cfg.MinBackoff),
		MaxBackoff:       time.Duration(cfg.MaxBackoff),
	}, dir, log, stderr)
}

// reopenLogs makes the worker running in DIR reopen DIR/worker.log.
func reopenLogs(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	logPath := filepath.Join(args[0], "worker.log")
	if err := daemon.ReopenLogs(filepath.Join(args[0], "worker.pid"), logPath, reopenTimeout); err != nil {
		return fail(stderr, fmt.Errorf("reopen-logs: %w", err))
	}
	fmt.Fprintf(stdout, "gbb-worker writes to %s\n", logPath)
	return 0
}

func stop(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err := daemon.Stop(filepath.Join(args[0], "worker.pid"), stopTimeout); err != nil {
		if errors.Is(err, daemon.ErrStillRunning) {
			// The first SIGTERM lets the running steps finish.
			err = fmt.Errorf("%w: it lets its running steps finish first; run \"gbb-worker stop %s\" again to interrupt them", err, args[0])
		}
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, "gbb-worker stopped")
	return 0
}

func direct(stops *stopSignals, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gbb-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	master := fs.String("master", "", "the master's `HOST:PORT`, or several, comma-separated (each may end in #sha256:HEX, its own CA pin)")
	name := fs.String("name", "", "the worker's name")
	password := fs.String("password", "", "the worker's password")
	basedir := fs.String("basedir", ".", "the worker's base directory")
	keepalive := fs.Duration("keepalive", 0, "how often to ping the master (gRPC keepalive; 0 means 10s, gRPC's least)")
	keepaliveTimeout := fs.Duration("keepalive-timeout", 0, "how long a ping may go unanswered (0 means 10s)")
	tlsOpts := tlsFlags(fs)
	logFormat := fs.String("log-format", "text", `the log's format: "text" or "json"`)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := checkLogFormat(*logFormat); err != nil {
		fmt.Fprintln(stderr, "gbb-worker: -log-format:", err)
		return 2
	}
	if fs.NArg() != 0 || *master == "" || *name == "" || (*password == "" && tlsOpts.CertFile == "") {
		fs.Usage()
		return 2
	}
	entries, err := parseMasters(splitMasters(*master))
	if err != nil {
		return fail(stderr, fmt.Errorf("-master: %w", err))
	}
	masters, err := masterAddrs(entries, *tlsOpts)
	if err != nil {
		return fail(stderr, err)
	}
	if *keepalive < 0 || *keepaliveTimeout < 0 {
		return fail(stderr, errors.New("-keepalive and -keepalive-timeout must not be negative"))
	}
	dir, err := filepath.Abs(*basedir)
	if err != nil {
		return fail(stderr, err)
	}
	lock, err := worker.LockBasedir(dir)
	if err != nil {
		return fail(stderr, err)
	}
	defer lock.Release()
	info, err := workerInfo(dir)
	if err != nil {
		return fail(stderr, err)
	}
	log := slog.New(logHandler(stderr, *logFormat))
	return runWorker(stops, protocol.ClientConfig{
		Masters: masters, Name: *name, Password: *password, Info: info,
		KeepaliveTime: *keepalive, KeepaliveTimeout: *keepaliveTimeout,
	}, dir, log, stderr)
}

// runWorker runs the worker until stops stops it or the master refuses
// it. Under daemon.Start, it reports ready after the first attempt to
// reach the master (or readyAfter), and reports a refusal as a failure.
func runWorker(stops *stopSignals, cfg protocol.ClientConfig, basedir string, log *slog.Logger, stderr io.Writer) int {
	log = log.With("worker", cfg.Name)
	cfg.Logger = log
	stops.setLogger(log)
	cfg.Drain = stops.drain
	// A previous run killed with SIGKILL left its commands running: kill
	// them before the master sends builds to their directories again. The
	// caller holds basedir (worker.LockBasedir): no live worker runs them.
	if err := worker.ReapOrphans(basedir, log); err != nil {
		log.Error("cannot kill the commands a previous run left running", "err", err)
	}
	cfg.Executor = worker.NewExecutor(basedir, log)
	// A master with finish_steps_on_restart has the commands it starts
	// outlive a restart; their output waits in these files meanwhile.
	spools := &worker.FileSpools{Dir: filepath.Join(basedir, worker.SpoolDir)}
	if err := spools.RemoveStale(); err != nil {
		log.Warn("resumable commands disabled", "err", err)
	} else {
		cfg.Spools = spools
	}
	cfg.OnAttempt = func(err error) {
		if !errors.Is(err, protocol.ErrAuthFailed) && !errors.Is(err, protocol.ErrVersionMismatch) && !errors.Is(err, protocol.ErrTLS) {
			daemon.Ready()
		}
	}
	t := time.AfterFunc(readyAfter, daemon.Ready)
	defer t.Stop()
	var addrs []string
	for _, m := range cfg.Masters {
		addrs = append(addrs, m.Addr)
	}
	log.Info("starting worker", "master", strings.Join(addrs, ","), "basedir", basedir, "version", version, "tls", cfg.Masters[0].TLS != nil)
	for _, m := range cfg.Masters {
		if m.TLS == nil && !loopbackMaster(m.Addr) {
			log.Warn("connecting to the master without TLS: commands, output and secrets cross the network in clear (the password does not); give -tls-fingerprint, -tls-ca or -tls unless the link is private (a jail's lo1)", "master", m.Addr)
		}
	}
	// The git step runs git, as buildbot's does: say so now, not at the
	// first checkout, in the log an admin reads after setting up a jail.
	if _, err := exec.LookPath("git"); err != nil {
		log.Warn("git not found in PATH: git steps will fail; install git (FreeBSD: pkg install git-lite; Debian: apt-get install git)", "PATH", os.Getenv("PATH"))
	}
	if err := protocol.NewClient(cfg).Run(stops.interrupt); err != nil {
		daemon.Fail(err)
		return fail(stderr, err)
	}
	log.Info("worker stopped")
	return 0
}
