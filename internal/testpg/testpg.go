package testpg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/jackc/pgx/v5"
)

// Superuser is the name of the server's superuser, the user of every URL
// NewDatabase returns. Authentication is trust: no password.
const Superuser = "postgres"

// dirPrefix starts the name of every server's directory under
// os.TempDir(); Start removes those of servers that are gone.
const dirPrefix = "gbb-testpg-"

// Server is a PostgreSQL server of this test binary. It is safe for
// concurrent use by the tests.
type Server struct {
	dir  string // removed by Stop; holds data/ and postgres.log
	port int
	cmd  *exec.Cmd

	exited  chan struct{} // closed when the postmaster has exited
	waitErr error         // the postmaster's exit, set before exited is closed

	mu    sync.Mutex
	admin *pgx.Conn // guarded by mu; on the "postgres" database
	seq   int       // guarded by mu; databases made so far

	stopOnce sync.Once
}

// Main starts a server, stores it in *s, runs the tests and exits with
// their code, having stopped the server: a package's TestMain is
//
//	func TestMain(m *testing.M) { testpg.Main(m, &pg) }
//
// When the server cannot start, Main says why and exits with 1.
func Main(m *testing.M, s **Server) {
	srv, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testpg: %v\n", err)
		os.Exit(1)
	}
	*s = srv
	code := m.Run()
	if err := srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testpg: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Start initializes a database cluster in a new temporary directory and
// starts PostgreSQL on it, listening on 127.0.0.1 only, on a free port.
// It installs Debian's postgresql package when no PostgreSQL is
// installed. When this process runs as root, initdb and postgres run as
// nobody. The server is set for speed, not for safety (fsync=off): tests
// only. It is killed when this process dies, however it dies; Stop stops
// it and removes its files.
func Start() (*Server, error) { return StartWith(Options{}) }

// Options change how StartWith sets the server up.
type Options struct {
	// Durable keeps PostgreSQL's crash-safe defaults (fsync,
	// synchronous_commit, full_page_writes, wal_level) instead of the
	// tests' fsync=off: for a benchmark that compares PostgreSQL with
	// bbolt, which syncs every transaction.
	Durable bool
}

// StartWith is Start with options.
func StartWith(o Options) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	removeStale()
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(fmt.Errorf("testpg: %w", err))
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", Superuser,
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.Env = pgEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("testpg: initdb: %v\n%s", err, out))
	}
	// A port another process took between our check and postgres's bind
	// makes postgres exit at once: try another.
	for attempt := 1; ; attempt++ {
		s, err := start(bin, dir, cred, o)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 5 {
			return fail(err)
		}
	}
}

var errPortTaken = errors.New("port taken")

// start starts postgres on the cluster in dir, on a free port, and waits
// until it accepts connections.
func start(bin, dir string, cred *syscall.Credential, o Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	defer logf.Close()
	s := &Server{dir: dir, port: port, exited: make(chan struct{})}
	args := []string{"-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=300",
		"-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning",
	}
	if !o.Durable {
		// Tests only: nothing here needs to survive a crash.
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "wal_level=minimal",
			"-c", "max_wal_senders=0",
		)
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.Dir = dir
	s.cmd.Env = pgEnv()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Pdeathsig kills the postmaster when the thread that started it
	// ends, which is when this process dies (SIGKILL included): the
	// goroutine below keeps its thread locked until the postmaster has
	// exited, so no other goroutine's end can take the thread with it.
	// The postmaster's backends exit when it dies.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("testpg: start postgres: %w", err)
	}
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			s.admin = c
			return s, nil
		}
		select {
		case <-s.exited:
			log := logTail()
			if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
				return nil, fmt.Errorf("testpg: postgres on port %d: %w", port, errPortTaken)
			}
			return nil, fmt.Errorf("testpg: postgres exited (%v):\n%s", s.waitErr, log)
		case <-ctx.Done():
			s.kill()
			return nil, fmt.Errorf("testpg: postgres did not accept connections in time (%v):\n%s", err, logTail())
		case <-time.After(20 * time.Millisecond): // the next try; the condition is a connection
		}
	}
}

// URL is the URL of database name on s, for pgx (and psql).
func (s *Server) URL(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, s.port, name)
}

// Pid is the postmaster's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// NewDatabase creates a new, empty database for t and returns its URL;
// the database is dropped when t ends (after the cleanups t registers
// later, so a store opened on it is closed first), with any connection
// still open to it.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("t%d_%s", s.seq, nonWord.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	name = name[:min(len(name), 63)] // NAMEDATALEN-1
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	cancel()
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("testpg: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testpg: drop database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// Stop stops the server and removes its files.
func (s *Server) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.admin.Close(context.Background())
		s.mu.Unlock()
		// Immediate shutdown: the cluster is thrown away.
		s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			err = errors.New("testpg: postgres did not stop in 30s: killed")
			s.kill()
		}
		if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
			err = fmt.Errorf("testpg: %w", rerr)
		}
	})
	return err
}

// kill kills the postmaster and waits for it.
func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// binDir returns the directory of Debian's PostgreSQL binaries (the
// newest major version installed), installing the postgresql package
// when there is none.
func binDir() (string, error) {
	find := func() string {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
		slices.SortFunc(dirs, func(a, b string) int { return majorOf(a) - majorOf(b) })
		if len(dirs) == 0 {
			return ""
		}
		return filepath.Dir(dirs[len(dirs)-1])
	}
	if d := find(); d != "" {
		return d, nil
	}
	if err := testdeb.Install("postgresql"); err != nil {
		return "", fmt.Errorf("testpg: no PostgreSQL in /usr/lib/postgresql: %w", err)
	}
	if d := find(); d != "" {
		return d, nil
	}
	return "", errors.New("testpg: installed postgresql but /usr/lib/postgresql/*/bin/postgres is still missing")
}

// majorOf is the major version in /usr/lib/postgresql/N/bin/postgres.
func majorOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// credential is who initdb and postgres run as: nobody when this process
// is root (postgres refuses to run as root), else nil (this process's
// user).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("testpg: running as root, and no user to run postgres as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testpg: user nobody: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// pgEnv is the environment of initdb and postgres: no PG* variable of
// the caller's, a locale every system has.
func pgEnv() []string {
	env := []string{"LANG=C", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort picks a free port on 127.0.0.1 below Linux's ephemeral range
// (32768-60999), where the kernel gives out no client ports, and below
// the e2e tests' range (20000-31999).
func freePort() (int, error) {
	for range 1000 {
		p := 12000 + rand.IntN(8000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("testpg: no free port on 127.0.0.1 in 12000-19999")
}

// removeStale removes the directories of servers whose test binary died
// without Stop (SIGKILL): those whose postmaster is gone.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
		if err != nil {
			continue // being made by another test binary, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if err != nil || pid <= 0 {
			continue
		}
		if !alive(pid) {
			os.RemoveAll(dir)
		}
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
