package testpg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var pg *Server

func TestMain(m *testing.M) { Main(m, &pg) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func queryString(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// TestNewDatabase: each database is new, empty and its own; it is gone
// when its test ends.
func TestNewDatabase(t *testing.T) {
	t.Parallel()
	var names []string
	t.Run("two", func(t *testing.T) {
		a, b := pg.NewDatabase(t), pg.NewDatabase(t)
		if a == b {
			t.Fatalf("two databases at one URL %s", a)
		}
		ca, cb := connect(t, a), connect(t, b)
		for _, c := range []*pgx.Conn{ca, cb} {
			if n := queryString(t, c, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'`); n != "0" {
				t.Errorf("a new database has %s tables", n)
			}
			names = append(names, queryString(t, c, `SELECT current_database()`))
		}
		if _, err := ca.Exec(context.Background(), `CREATE TABLE x (id int)`); err != nil {
			t.Fatal(err)
		}
		if n := queryString(t, cb, `SELECT count(*)::text FROM pg_tables WHERE tablename = 'x'`); n != "0" {
			t.Errorf("a table of one database is in the other")
		}
		if u := queryString(t, ca, `SELECT current_user`); u != Superuser {
			t.Errorf("current_user %q, want %q", u, Superuser)
		}
	})
	admin := connect(t, pg.URL("postgres"))
	for _, name := range names {
		if n := queryString(t, admin, fmt.Sprintf(`SELECT count(*)::text FROM pg_database WHERE datname = '%s'`, name)); n != "0" {
			t.Errorf("database %s outlived its test", name)
		}
	}
}

// TestSettings: postgres listens on 127.0.0.1 only, no unix socket, and
// runs as an unprivileged user when the tests run as root.
func TestSettings(t *testing.T) {
	t.Parallel()
	c := connect(t, pg.NewDatabase(t))
	for setting, want := range map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": "",
		"fsync":                   "off",
	} {
		if got := queryString(t, c, "SHOW "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	uid := procUID(t, pg.Pid())
	if os.Geteuid() == 0 && uid == 0 {
		t.Errorf("the tests run as root and so does postgres")
	}
	if os.Geteuid() != 0 && uid != os.Geteuid() {
		t.Errorf("postgres runs as uid %d, the tests as %d", uid, os.Geteuid())
	}
}

// procUID is the real uid of process pid.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}

// childEnv makes this test binary, run again by TestDiesWithTestBinary,
// the test binary that dies.
const childEnv = "GBB_TESTPG_CHILD"

// TestDiesWithTestBinary SIGKILLs a test binary whose server has a
// client connected: the postmaster and the client's backend exit, and
// the port is closed.
func TestDiesWithTestBinary(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		// The child: report the server and a backend, then wait to be
		// killed (or for the parent to go away: stdin ends).
		url := pg.NewDatabase(t)
		c := connect(t, url)
		backend := queryString(t, c, `SELECT pg_backend_pid()::text`)
		fmt.Printf("child postmaster=%d backend=%s dir=%s url=%s\n", pg.Pid(), backend, pg.dir, url)
		bufio.NewReader(os.Stdin).ReadString('\n')
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiesWithTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var postmaster, backend int
	var dir, url string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "child postmaster=%d backend=%d dir=%s url=%s", &postmaster, &backend, &dir, &url); err == nil {
			break
		}
	}
	if postmaster == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child test binary said nothing of its server (%v)", sc.Err())
	}
	go func() { // drain the rest, so the child never blocks on its stdout
		for sc.Scan() {
		}
	}()
	defer os.RemoveAll(dir) // a SIGKILLed binary leaves it; the next Start would too
	for _, pid := range []int{postmaster, backend} {
		if !alive(pid) {
			t.Fatalf("process %d is not running before the kill", pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for _, pid := range []int{postmaster, backend} {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d outlived the SIGKILLed test binary by a minute", pid)
			}
			time.Sleep(10 * time.Millisecond) // polling the process table: there is nothing to wait on
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Errorf("%s still accepts connections", url)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("connect after the kill: %v", err)
	}
}

// TestDurable: the tests' server trades safety for speed; a server started
// Durable keeps PostgreSQL's crash-safe settings, as a benchmark against a
// store that syncs must.
func TestDurable(t *testing.T) {
	t.Parallel()
	settings := func(c *pgx.Conn) string {
		return queryString(t, c, `SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit') || ' ' || current_setting('full_page_writes')`)
	}
	if got := settings(connect(t, pg.NewDatabase(t))); got != "off off off" {
		t.Errorf("tests' server: fsync, synchronous_commit, full_page_writes = %s, want off off off", got)
	}
	d, err := StartWith(Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	if got := settings(connect(t, d.NewDatabase(t))); got != "on on on" {
		t.Errorf("durable server: fsync, synchronous_commit, full_page_writes = %s, want on on on", got)
	}
}
