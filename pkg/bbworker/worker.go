package bbworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// Config is what a Worker runs with.
type Config struct {
	Builders []Builder // the builders the worker serves, for setBuilderList
	// CurrentBuilders returns the builders the worker serves now; a
	// command for a builder the worker was not given (a reconfig added
	// it) gives it the new list first. Nil means Builders, unchanged.
	CurrentBuilders func() []Builder
	// KeepaliveInterval is how often the master round-trips a keepalive
	// to the worker; KeepaliveTimeout how long one may take. A worker
	// that does not answer is dropped, so a lost buildbot-worker is found
	// within their sum, as a gbb-worker. Zero means 10s each.
	KeepaliveInterval, KeepaliveTimeout time.Duration
	Logger                              *slog.Logger // nil means discard
}

// Worker is a logged-in buildbot-worker as gbb's build engine drives it
// (build.Worker): it runs gbb's protocol.Commands as buildbot's master
// runs its steps, with buildbot's remote commands (shell, uploadFile,
// uploadDirectory, downloadFile, mkdir, rmdir, rmfile, listdir, cpdir).
// A buildbot-worker keeps no command across a master restart: Kept is
// empty, Resume and Abandon fail.
type Worker struct {
	conn     Conn
	info     protocol.WorkerInfo
	commands map[string]bool // worker_commands of its info
	cfg      Config
	log      *slog.Logger
	nextID   atomic.Uint64
	never    chan struct{} // Draining: a buildbot-worker never says it drains

	setMu sync.Mutex // one setBuilderList at a time, its dirs recorded in order

	mu   sync.Mutex
	err  error             // guarded by mu; why the connection ended, once it did
	dirs map[string]string // guarded by mu; builder directory -> name, as last given to the worker
}

// ErrNoKeepalive is the reason a worker is dropped when it did not answer
// a keepalive in time.
var ErrNoKeepalive = errors.New("bbworker: no answer to a keepalive")

// Attach runs buildbot's attach sequence on conn (master/buildbot/worker/
// base.py, attached()): print a greeting into the worker's log, read its
// info, and give it the builders it serves with their directories. The
// Worker is then ready for the engine; run KeepAlive next.
func Attach(ctx context.Context, conn Conn, cfg Config) (*Worker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 10 * time.Second
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = 10 * time.Second
	}
	w := &Worker{conn: conn, cfg: cfg, never: make(chan struct{}),
		log: log.With("worker", conn.Name(), "protocol", conn.Protocol())}
	if err := conn.Print(ctx, "attached"); err != nil {
		return nil, fmt.Errorf("attach %s: print: %w", conn.Name(), err)
	}
	info, err := conn.GetWorkerInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("attach %s: getWorkerInfo: %w", conn.Name(), err)
	}
	w.info, w.commands = workerInfo(info, conn.Protocol())
	if err := w.SetBuilders(ctx, cfg.Builders); err != nil {
		return nil, fmt.Errorf("attach %s: setBuilderList: %w", conn.Name(), err)
	}
	return w, nil
}

// workerInfo turns buildbot's info dict into gbb's WorkerInfo: version is
// the buildbot-worker's, Extra holds protocol ("pb" or "msgpack"), system
// and access_uri. It also returns the worker's commands.
func workerInfo(info map[string]any, proto string) (protocol.WorkerInfo, map[string]bool) {
	str := func(k string) string {
		switch v := info[k].(type) {
		case string:
			return strings.TrimSpace(v)
		case nil:
			return ""
		default:
			return fmt.Sprint(v)
		}
	}
	wi := protocol.WorkerInfo{
		Admin:   str("admin"),
		Host:    str("host"),
		OS:      str("system"),
		Version: str("version"),
		Basedir: str("basedir"),
		Extra:   map[string]string{"protocol": proto},
	}
	if n, ok := toInt(info["numcpus"]); ok {
		wi.NumCPU = int(n)
	}
	for _, k := range []string{"access_uri", "system"} {
		if s := str(k); s != "" {
			wi.Extra[k] = s
		}
	}
	cmds := map[string]bool{}
	if m, ok := info["worker_commands"].(map[string]any); ok {
		for k := range m {
			cmds[k] = true
		}
	}
	return wi, cmds
}

// KeepAlive round-trips a keepalive every KeepaliveInterval until the
// connection ends or ctx is done; a keepalive unanswered within
// KeepaliveTimeout drops the connection (Err then wraps ErrNoKeepalive).
// It returns when the connection has ended or ctx is done.
func (w *Worker) KeepAlive(ctx context.Context) {
	t := time.NewTicker(w.cfg.KeepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.conn.Done():
			return
		case <-t.C:
		}
		kctx, cancel := context.WithTimeout(ctx, w.cfg.KeepaliveTimeout)
		err := w.conn.Keepalive(kctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			w.Close(fmt.Errorf("%w within %s: %v", ErrNoKeepalive, w.cfg.KeepaliveTimeout, err))
			return
		}
	}
}

// SetBuilders gives the worker a new list of builders (after a reconfig),
// as buildbot's master does.
func (w *Worker) SetBuilders(ctx context.Context, builders []Builder) error {
	w.setMu.Lock()
	defer w.setMu.Unlock()
	if _, err := w.conn.SetBuilderList(ctx, builders); err != nil {
		return err
	}
	dirs := make(map[string]string, len(builders))
	for _, b := range builders {
		dirs[b.Dir] = b.Name
	}
	w.mu.Lock()
	w.dirs = dirs
	w.mu.Unlock()
	return nil
}

// target is the builder a command runs for: its directory on the worker
// (protocol.Command.Builder) and its name, which buildbot's remote
// commands take.
type target struct{ dir, name string }

// target returns the builder whose directory is dir. One the worker was
// not given yet (a reconfig added it, and this build came first) is
// given now, with Config.CurrentBuilders.
func (w *Worker) target(ctx context.Context, dir string) (target, error) {
	lookup := func() (string, bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		n, ok := w.dirs[dir]
		return n, ok
	}
	if n, ok := lookup(); ok {
		return target{dir: dir, name: n}, nil
	}
	if w.cfg.CurrentBuilders != nil {
		if err := w.SetBuilders(ctx, w.cfg.CurrentBuilders()); err != nil {
			select {
			case <-w.conn.Done():
				return target{}, fmt.Errorf("%w: setBuilderList: %v", protocol.ErrConnectionLost, err)
			default:
			}
			return target{}, fmt.Errorf("bbworker: setBuilderList: %w", err)
		}
		if n, ok := lookup(); ok {
			return target{dir: dir, name: n}, nil
		}
	}
	return target{}, fmt.Errorf("buildbot-worker %s does not serve a builder with directory %q", w.Name(), dir)
}

// Name is the worker's name.
func (w *Worker) Name() string { return w.conn.Name() }

// Info is the worker's info from getWorkerInfo.
func (w *Worker) Info() protocol.WorkerInfo { return w.info }

// Remote is the worker's network address.
func (w *Worker) Remote() string { return w.conn.Remote() }

// Protocol is "pb" or "msgpack".
func (w *Worker) Protocol() string { return w.conn.Protocol() }

// Done is closed when the connection has ended.
func (w *Worker) Done() <-chan struct{} { return w.conn.Done() }

// Draining is never closed: a buildbot-worker does not tell its master it
// is stopping; it disconnects.
func (w *Worker) Draining() <-chan struct{} { return w.never }

// Close drops the connection for reason.
func (w *Worker) Close(reason error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = reason
	}
	w.mu.Unlock()
	w.conn.Close()
}

// Err says why the connection ended: the reason given to Close, or
// protocol.ErrConnectionLost; nil while it lasts.
func (w *Worker) Err() error {
	select {
	case <-w.conn.Done():
	default:
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = protocol.ErrConnectionLost
	}
	return w.err
}

// Kept is empty: a buildbot-worker keeps no command for a master that
// restarts.
func (w *Worker) Kept() []protocol.Kept { return nil }

// errNoResume is returned by Resume and Abandon.
var errNoResume = errors.New("bbworker: a buildbot-worker keeps no command across master restarts")

// Resume fails: see Kept.
func (w *Worker) Resume(context.Context, string, int64, func(protocol.Output)) (protocol.Result, error) {
	return protocol.Result{}, errNoResume
}

// Abandon fails: see Kept.
func (w *Worker) Abandon(context.Context, string, string) error { return errNoResume }

// Run runs cmd on the worker with buildbot's remote commands, its output
// to out (never called concurrently, nor after Run returns). Cancelling
// ctx interrupts the command (remote_interruptCommand): the worker kills
// its process and the command completes, Interrupted. A connection that
// ends first makes Run return protocol.ErrConnectionLost. cmd.ResumeKey is
// ignored: the command dies with the connection, as in buildbot.
func (w *Worker) Run(ctx context.Context, cmd protocol.Command, out func(protocol.Output)) (protocol.Result, error) {
	start := time.Now()
	var res protocol.Result
	if cmd.Shell == nil && cmd.Git == nil && cmd.File == nil && cmd.Upload == nil && cmd.Download == nil {
		return protocol.Result{}, errors.New("bbworker: empty command")
	}
	b, err := w.target(ctx, cmd.Builder)
	if err != nil {
		if errors.Is(err, protocol.ErrConnectionLost) {
			return protocol.Result{}, err
		}
		header(out, "%v", err)
		return protocol.Result{ExitCode: -1, Err: err.Error()}, nil
	}
	switch {
	case cmd.Shell != nil:
		res, err = w.shell(ctx, b, cmd.Shell, out)
	case cmd.Git != nil:
		res, err = w.git(ctx, b, cmd.Git, out)
	case cmd.File != nil:
		res, err = w.file(ctx, b, cmd.File, out)
	case cmd.Upload != nil:
		res, err = w.upload(ctx, b, cmd.Upload, out)
	case cmd.Download != nil:
		res, err = w.download(ctx, b, cmd.Download, out)
	}
	if res.Elapsed == 0 {
		res.Elapsed = time.Since(start)
	}
	return res, err
}

// remote is one remote command's run: what it reported.
type remote struct {
	rc       int64
	hasRC    bool
	elapsed  time.Duration
	files    []string
	failure  error
	killedBy string // the signal number of "process killed by signal N"
	timedOut bool
	stdout   strings.Builder // when captured
}

// sink is the CommandSink of one remote command: it turns updates into
// output, until the command completes or Run gives up on it.
type sink struct {
	out     func(protocol.Output)
	quiet   bool // drop header and stdout output (the helper commands of a git step: cpdir's cp -v)
	capture bool // keep stdout in r.stdout too

	mu     sync.Mutex
	r      *remote       // guarded by mu
	closed bool          // guarded by mu: Run returned, out may not be called
	done   chan struct{} // closed by Complete
	once   sync.Once
}

func (s *sink) Update(updates []Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, u := range updates {
		switch u.Key {
		case "stdout", "stderr":
			text, _ := u.Value.(string)
			st := protocol.Stdout
			if u.Key == "stderr" {
				st = protocol.Stderr
			} else if s.capture {
				s.r.stdout.WriteString(text)
			}
			if text != "" && !(s.quiet && st == protocol.Stdout) {
				s.out(protocol.Output{Stream: st, Data: []byte(text)})
			}
		case "header":
			text, _ := u.Value.(string)
			s.header(text)
		case "log":
			l, ok := u.Value.([]any)
			if !ok || len(l) != 2 {
				continue
			}
			name, _ := l[0].(string)
			text, _ := l[1].(string)
			if text != "" {
				s.out(protocol.Output{Stream: protocol.LogFile, Log: name, Data: []byte(text)})
			}
		case "rc":
			if n, ok := toInt(u.Value); ok {
				s.r.rc, s.r.hasRC = n, true
			}
		case "elapsed":
			if f, ok := toFloat(u.Value); ok {
				s.r.elapsed = time.Duration(f * float64(time.Second))
			}
		case "files":
			if l, ok := u.Value.([]any); ok {
				for _, f := range l {
					if n, ok := f.(string); ok {
						s.r.files = append(s.r.files, n)
					}
				}
			}
		}
	}
}

// header passes the worker's header lines on, but for its elapsedTime
// (the master writes its own, as for a gbb-worker), and notes a kill by a
// signal or a timeout.
func (s *sink) header(text string) {
	var kept strings.Builder
	for line := range strings.Lines(text) {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "elapsedTime=") {
			continue
		}
		if sig, ok := strings.CutPrefix(l, "process killed by signal "); ok {
			s.r.killedBy = sig
		}
		if strings.HasPrefix(l, "command timed out: ") {
			s.r.timedOut = true
		}
		kept.WriteString(line)
	}
	if kept.Len() > 0 && !s.quiet {
		s.out(protocol.Output{Stream: protocol.Header, Data: []byte(kept.String())})
	}
}

func (s *sink) Complete(failure error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.r.failure = failure
		s.mu.Unlock()
		close(s.done)
	})
}

// close stops the sink from calling out.
func (s *sink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// has reports whether the worker has the remote command name, as its
// worker_commands says (a worker that sent none is taken to have all).
func (w *Worker) has(name string) bool {
	return len(w.commands) == 0 || w.commands[name]
}

// unsupported is the Result of a command the worker does not have.
func (w *Worker) unsupported(name string, out func(protocol.Output)) protocol.Result {
	msg := fmt.Sprintf("buildbot-worker %s (version %s) has no remote command %q (it has %s): this step cannot run on it",
		w.Name(), w.info.Version, name, strings.Join(slices.Sorted(maps.Keys(w.commands)), ", "))
	out(protocol.Output{Stream: protocol.Header, Data: []byte(msg + "\n")})
	return protocol.Result{ExitCode: -1, Err: msg}
}

// errUnsupported is returned by remote for a command the worker lacks.
var errUnsupported = errors.New("bbworker: remote command missing")

// remote runs the remote command name with args for builder and waits for
// it to complete. Cancelling ctx interrupts it, once; interrupted says so.
func (w *Worker) remote(ctx context.Context, b target, name string, args map[string]any, s *sink) (r *remote, interrupted bool, err error) {
	if !w.has(name) {
		return nil, false, errUnsupported
	}
	s.r = &remote{}
	s.done = make(chan struct{})
	defer s.close()
	id := strconv.FormatUint(w.nextID.Add(1), 10)
	if err := w.conn.StartCommand(ctx, s, b.name, id, name, args); err != nil {
		select {
		case <-w.conn.Done():
			return nil, false, fmt.Errorf("%w: %s: %v", protocol.ErrConnectionLost, name, w.Err())
		default:
		}
		if ctx.Err() != nil {
			return &remote{}, true, nil
		}
		return nil, false, fmt.Errorf("start %s: %w", name, err)
	}
	cancelled := ctx.Done()
	for {
		select {
		case <-s.done:
			s.mu.Lock()
			defer s.mu.Unlock()
			// A command the protocol completed with a failure because the
			// connection ended (it closes Done first): the worker is lost,
			// as buildbot's RemoteCommand sees error.ConnectionLost.
			if s.r.failure != nil && !s.r.hasRC {
				select {
				case <-w.conn.Done():
					return nil, interrupted, fmt.Errorf("%w: %s: %v", protocol.ErrConnectionLost, name, s.r.failure)
				default:
				}
			}
			return s.r, interrupted, nil
		case <-w.conn.Done():
			// A Complete that came with the connection's end still counts.
			select {
			case <-s.done:
				continue
			default:
			}
			return nil, interrupted, fmt.Errorf("%w: %s: %v", protocol.ErrConnectionLost, name, w.Err())
		case <-cancelled:
			cancelled = nil
			interrupted = true
			why := fmt.Sprint(context.Cause(ctx))
			ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.KeepaliveTimeout)
			if err := w.conn.InterruptCommand(ictx, b.name, id, why); err != nil {
				w.log.Warn("interrupt command", "command", name, "err", err)
			}
			cancel()
		}
	}
}

// result is the Result of a completed remote command.
func result(r *remote, interrupted bool) protocol.Result {
	res := protocol.Result{ExitCode: int(r.rc), Elapsed: r.elapsed, Interrupted: interrupted, TimedOut: r.timedOut && !interrupted}
	if r.killedBy != "" {
		res.Signal = signalName(r.killedBy)
	}
	if r.failure != nil {
		res.Err = r.failure.Error()
		if !r.hasRC {
			res.ExitCode = -1
		}
	} else if !r.hasRC {
		res.ExitCode = -1
		res.Err = "the worker completed the command without an exit code"
	}
	return res
}

// run is remote for a command whose Result is the step's.
func (w *Worker) run(ctx context.Context, b target, name string, args map[string]any, s *sink) (protocol.Result, error) {
	r, interrupted, err := w.remote(ctx, b, name, args, s)
	if errors.Is(err, errUnsupported) {
		return w.unsupported(name, s.out), nil
	}
	if err != nil {
		return protocol.Result{}, err
	}
	return result(r, interrupted), nil
}

// secs is a duration as buildbot's args take it: whole seconds as an
// integer (so the worker writes "timeout 1200 secs"), else a float; nil
// for zero.
func secs(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	if d%time.Second == 0 {
		return int64(d / time.Second)
	}
	return d.Seconds()
}

// shellArgs are the args of buildbot's RemoteShellCommand for sh.
func shellArgs(sh *protocol.ShellCommand) map[string]any {
	var command any = sh.Script
	if len(sh.Argv) > 0 {
		argv := make([]any, len(sh.Argv))
		for i, a := range sh.Argv {
			argv[i] = a
		}
		command = argv
	}
	// buildbot-worker expands ${NAME} and joins lists itself: the values
	// go as they are, lists as lists.
	var env any
	if len(sh.Env)+len(sh.EnvLists) > 0 {
		m := make(map[string]any, len(sh.Env)+len(sh.EnvLists))
		for k, v := range sh.Env {
			m[k] = v
		}
		for k, l := range sh.EnvLists {
			vs := make([]any, len(l))
			for i, v := range l {
				vs[i] = v
			}
			m[k] = vs
		}
		env = m
	}
	logfiles := map[string]any{}
	for k, v := range sh.Logfiles {
		logfiles[k] = v
	}
	args := map[string]any{
		"workdir":     sh.Workdir,
		"command":     command,
		"env":         env,
		"want_stdout": !sh.NoStdout,
		"want_stderr": !sh.NoStderr,
		"logfiles":    logfiles,
		"timeout":     secs(sh.Timeout),
		"maxTime":     secs(sh.MaxTime),
		"usePTY":      false,
		// gbb-workers do not write their environment into the log.
		"logEnviron":    false,
		"initial_stdin": nil,
	}
	// gbb-worker: InterruptSignal first, then KILL after SigtermTime (5s
	// when zero) unless it was KILL. buildbot-worker: with sigtermTime,
	// TERM first and interruptSignal after it; without, interruptSignal
	// alone. So TERM maps exactly; another signal is sent alone
	// (checkconfig refuses it on a builder of buildbot-workers only).
	args["sigtermTime"] = nil
	switch sig := sh.InterruptSignal; {
	case sig == "KILL", sig == "" && sh.SigtermTime == 0:
		args["interruptSignal"] = "KILL"
	case sig == "TERM", sig == "":
		grace := sh.SigtermTime
		if grace == 0 {
			grace = 5 * time.Second
		}
		args["sigtermTime"] = secs(grace)
		args["interruptSignal"] = "KILL"
	default:
		args["interruptSignal"] = sig
	}
	return args
}

func (w *Worker) shell(ctx context.Context, b target, sh *protocol.ShellCommand, out func(protocol.Output)) (protocol.Result, error) {
	if (len(sh.Argv) == 0) == (sh.Script == "") {
		return protocol.Result{}, errors.New("bbworker: shell command needs exactly one of argv and script")
	}
	if sig := sh.InterruptSignal; sig != "" && sig != "KILL" && sig != "TERM" {
		header(out, "interrupt_signal %s: a buildbot-worker sends SIG%s alone on interrupt and timeout, no SIGKILL after it", sig, sig)
	}
	return w.run(ctx, b, "shell", shellArgs(sh), &sink{out: out})
}

// builderPath is p (slash separated, relative to BASEDIR/<builder>) on the
// worker, as its own path syntax writes it, for the headers gbb-workers
// write too.
func (w *Worker) builderPath(b target, parts ...string) string {
	sep := "/"
	if strings.Contains(w.info.Basedir, `\`) && !strings.Contains(w.info.Basedir, "/") {
		sep = `\`
	}
	all := []string{strings.TrimRight(w.info.Basedir, sep), b.dir}
	for _, p := range parts {
		if p != "" && p != "." {
			all = append(all, strings.ReplaceAll(p, "/", sep))
		}
	}
	return strings.Join(all, sep)
}

func header(out func(protocol.Output), format string, args ...any) {
	out(protocol.Output{Stream: protocol.Header, Data: fmt.Appendf(nil, format+"\n", args...)})
}

func (w *Worker) file(ctx context.Context, b target, f *protocol.FileCommand, out func(protocol.Output)) (protocol.Result, error) {
	switch f.Op {
	case protocol.Mkdir:
		header(out, "mkdir %s", w.builderPath(b, f.Path))
		return w.run(ctx, b, "mkdir", map[string]any{"dir": f.Path, "logEnviron": false}, &sink{out: out})
	case protocol.Rmdir:
		header(out, "rmdir %s", w.builderPath(b, f.Path))
		return w.run(ctx, b, "rmdir", map[string]any{"dir": f.Path, "logEnviron": false, "timeout": int64(120)}, &sink{out: out, quiet: true})
	case protocol.RemoveFile:
		header(out, "rmfile %s", w.builderPath(b, f.Path))
		return w.run(ctx, b, "rmfile", map[string]any{"path": f.Path}, &sink{out: out})
	}
	return protocol.Result{}, fmt.Errorf("bbworker: unknown file operation %d", f.Op)
}

// blockSize is a transfer's block size as gbb's: zero or more than
// protocol.MaxChunk means MaxChunk.
func blockSize(n int) int64 {
	if n <= 0 || n > protocol.MaxChunk {
		return protocol.MaxChunk
	}
	return int64(n)
}

func maxSize(n int64) any {
	if n <= 0 {
		return nil
	}
	return n
}

func (w *Worker) upload(ctx context.Context, b target, u *protocol.UploadCommand, out func(protocol.Output)) (protocol.Result, error) {
	fw := &fileWriter{sink: u.Sink}
	args := map[string]any{
		"workdir":   u.Workdir,
		"workersrc": u.Path,
		"writer":    FileWriter(fw),
		"maxsize":   maxSize(u.MaxSize),
		"blocksize": blockSize(u.BlockSize),
	}
	name := "uploadFile"
	if u.Directory {
		name = "uploadDirectory"
		args["compress"] = nil
	} else {
		args["keepstamp"] = false
	}
	res, err := w.run(ctx, b, name, args, &sink{out: out})
	if err == nil && res.Err == "" && res.ExitCode == 0 {
		header(out, "sent %d bytes", fw.written())
	}
	if werr := fw.failed(); werr != nil && err == nil && res.Err == "" {
		res.Err = werr.Error()
	}
	return res, err
}

// fileWriter is the FileWriter of an upload: it writes into the Sink the
// master's upload step gave (pkg/build's transfer code: the temporary
// file, its size limit, its master path checks), which unpacks a
// directory's tar or renames the file into place once the command ends.
type fileWriter struct {
	sink interface{ Write([]byte) (int, error) }

	mu  sync.Mutex
	n   int64 // guarded by mu
	err error // guarded by mu: the sink's first failure
}

func (f *fileWriter) Write(data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	n, err := f.sink.Write(data)
	f.n += int64(n)
	if err != nil {
		f.err = err
	}
	return err
}

// Utime is refused: gbb's uploads do not keep the worker's file times
// (the master asks for keepstamp false).
func (f *fileWriter) Utime(time.Time, time.Time) error {
	return errors.New("bbworker: gbb's uploads do not keep file times")
}

// Unpack ends a directory upload's tar stream: the master's upload step
// unpacks it once the command has completed, with its own checks.
func (f *fileWriter) Unpack() error { return f.failed() }

// Close ends the upload; the master's upload step closes its file.
func (f *fileWriter) Close() error { return f.failed() }

func (f *fileWriter) written() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fileWriter) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (w *Worker) download(ctx context.Context, b target, d *protocol.DownloadCommand, out func(protocol.Output)) (protocol.Result, error) {
	var mode any
	if d.Mode != 0 {
		mode = int64(d.Mode.Perm())
	}
	fr := &fileReader{src: d.Source}
	header(out, "receiving %s", w.builderPath(b, d.Workdir, d.Path))
	res, err := w.run(ctx, b, "downloadFile", map[string]any{
		"workdir":    d.Workdir,
		"workerdest": d.Path,
		"reader":     FileReader(fr),
		"maxsize":    maxSize(d.MaxSize),
		"blocksize":  blockSize(d.BlockSize),
		"mode":       mode,
	}, &sink{out: out})
	if rerr := fr.failed(); rerr != nil && err == nil && res.Err == "" {
		res.Err = rerr.Error()
	}
	if err == nil && res.Err == "" && res.ExitCode == 0 {
		header(out, "received %d bytes", fr.read())
	}
	return res, err
}

// fileReader is the FileReader of a download: it reads from the Source
// the master's download step gave.
type fileReader struct {
	src interface{ Read([]byte) (int, error) }

	mu  sync.Mutex
	err error // guarded by mu: the source's failure, EOF excepted
	eof bool  // guarded by mu
	n   int64 // guarded by mu: the bytes read
}

func (f *fileReader) read() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fileReader) Read(maxLength int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.eof || maxLength <= 0 {
		return nil, nil
	}
	buf := make([]byte, min(maxLength, protocol.MaxChunk))
	n := 0
	for n < len(buf) {
		m, err := f.src.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				f.eof = true
				break
			}
			f.err = err
			return nil, err
		}
	}
	f.n += int64(n)
	return buf[:n], nil
}

func (f *fileReader) Close() error { return nil }

func (f *fileReader) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// signalNames are the signals whose numbers POSIX systems share; the
// worker says "process killed by signal N" with its own numbers.
var signalNames = map[string]string{"1": "HUP", "2": "INT", "3": "QUIT", "6": "ABRT", "9": "KILL", "14": "ALRM", "15": "TERM"}

// signalName names the signal number n, as Result.Signal does.
func signalName(n string) string {
	if s, ok := signalNames[n]; ok {
		return s
	}
	return "SIG" + n
}

func toInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case float64:
		return int64(v), true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	}
	return 0, false
}
