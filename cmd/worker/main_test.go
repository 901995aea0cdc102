package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// binary is the gbb-worker built for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gbb-worker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gbb-worker")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=test-version", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gbbWorker runs the binary and returns its exit code, stdout and stderr.
func gbbWorker(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestCreateWorker(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "w")
	code, _, stderr := gbbWorker(t, "create-worker", dir, "localhost:9989", "w1", `pa"ss`)
	if code != 0 {
		t.Fatalf("create-worker: exit %d: %s", code, stderr)
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fileConfig{Master: "localhost:9989", Name: "w1", Password: `pa"ss`}, cfg); diff != "" {
		t.Errorf("worker.toml (-want +got):\n%s", diff)
	}
	for name, want := range map[string]string{"info/admin": adminPlaceholder, "info/host": hostPlaceholder} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	toml, _ := os.ReadFile(filepath.Join(dir, "worker.toml"))
	for _, opt := range []string{"#keepalive = ", "#keepalive_timeout = ", "#min_backoff = ", "#max_backoff = "} {
		if !bytes.Contains(toml, []byte(opt)) {
			t.Errorf("worker.toml lacks the commented option %q", opt)
		}
	}
	// A pin and a CA file together: which one would count is unclear.
	both := filepath.Join(t.TempDir(), "both")
	code, _, stderr = gbbWorker(t, "create-worker", "-tls-fingerprint", "sha256:"+strings.Repeat("ab", 32), "-tls-ca", "/nonexistent/ca.pem", both, "localhost:9989", "w1", "pw")
	if code == 0 || !strings.Contains(stderr, "not both") {
		t.Errorf("create-worker -tls-fingerprint -tls-ca: exit %d, %q; want a refusal", code, stderr)
	}
	if _, err := os.Stat(both); err == nil {
		t.Errorf("the refused create-worker made %s", both)
	}
	code, _, stderr = gbbWorker(t, "create-worker", dir, "other:1", "w2", "x")
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("second create-worker: exit %d, %q; want a refusal", code, stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "worker.toml")); !bytes.Equal(got, toml) {
		t.Error("second create-worker changed worker.toml")
	}
}

func TestStartMissingDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{{"start", dir}, {"start", "--nodaemon", dir}} {
		code, _, stderr := gbbWorker(t, args...)
		if code != 1 || !strings.Contains(stderr, filepath.Join(dir, "worker.toml")) {
			t.Errorf("%v: exit %d, %q; want 1 and the missing file named", args, code, stderr)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, toml string
		want       fileConfig
		errs       []string
	}{
		{
			name: "full",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\nkeepalive = \"15s\"\nmax_backoff = \"1m\"\n",
			want: fileConfig{Master: "m:1", Name: "n", Password: "p", Keepalive: duration(15 * time.Second), MaxBackoff: duration(time.Minute)},
		},
		{
			name: "whole seconds",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\nkeepalive = 3\n",
			want: fileConfig{Master: "m:1", Name: "n", Password: "p", Keepalive: duration(3 * time.Second)},
		},
		{
			name: "unknown keys",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\n\nkeeplive = \"1s\"\n[extra]\nx = 1\n",
			errs: []string{"worker.toml:5: keeplive: unknown key", "worker.toml:6: extra: unknown key"},
		},
		{
			name: "missing",
			toml: "name = \"n\"\n",
			errs: []string{"master: required (or masters)", "password: required"},
		},
		{
			name: "password file",
			toml: "master = \"m:1\"\nname = \"n\"\npassword_file = \"pw\"\n",
			want: fileConfig{Master: "m:1", Name: "n", Password: "from-file", PasswordFile: "pw"},
		},
		{
			name: "password and password file",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\npassword_file = \"pw\"\n",
			errs: []string{"worker.toml:4: password_file: not with password"},
		},
		{
			name: "password file is a device",
			toml: "master = \"m:1\"\nname = \"n\"\npassword_file = \"/dev/zero\"\n",
			errs: []string{"worker.toml:3: password_file: /dev/zero is not a regular file"},
		},
		{
			name: "missing password file",
			toml: "master = \"m:1\"\nname = \"n\"\npassword_file = \"nope\"\n",
			errs: []string{"worker.toml:3: password_file: open "},
		},
		{
			name: "tls",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\ntls_fingerprint = \"sha256:" + strings.Repeat("ab", 32) + "\"\ntls_server_name = \"ci.example.org\"\n",
			want: fileConfig{Master: "m:1", Name: "n", Password: "p", TLSFinger: "sha256:" + strings.Repeat("ab", 32), TLSServerName: "ci.example.org"},
		},
		{
			name: "bad fingerprint",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\ntls_fingerprint = \"md5:00\"\n",
			errs: []string{`worker.toml: tls: fingerprint "md5:00": must start with sha256:`},
		},
		{
			name: "missing CA file",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\ntls_ca_file = \"nope.pem\"\n",
			errs: []string{"worker.toml: tls: CA file: open "},
		},
		{
			name: "client certificate without TLS",
			toml: "master = \"m:1\"\nname = \"n\"\ntls_cert_file = \"w.pem\"\ntls_key_file = \"w.key\"\n",
			errs: []string{"worker.toml: tls: a client certificate needs TLS"},
		},
		{
			name: "json log",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\nlog_format = \"json\"\n",
			want: fileConfig{Master: "m:1", Name: "n", Password: "p", LogFormat: "json"},
		},
		{
			name: "bad log format",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\n\nlog_format = \"xml\"\n",
			errs: []string{`worker.toml:5: log_format: unknown log format "xml" (want "text" or "json")`},
		},
		{
			name: "masters",
			toml: "masters = [\"a:1\", \"b:2#sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\"]\nname = \"n\"\npassword = \"p\"\n",
			want: fileConfig{Masters: []string{"a:1", "b:2#sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}, Name: "n", Password: "p"},
		},
		{
			name: "master with a comma list",
			toml: "master = \"a:1, b:2\"\nname = \"n\"\npassword = \"p\"\n",
			want: fileConfig{Master: "a:1, b:2", Name: "n", Password: "p"},
		},
		{
			name: "master and masters",
			toml: "master = \"a:1\"\nname = \"n\"\npassword = \"p\"\nmasters = [\"b:2\"]\n",
			errs: []string{"worker.toml:4: masters: not with master (line 1)"},
		},
		{
			name: "empty masters",
			toml: "masters = []\nname = \"n\"\npassword = \"p\"\n",
			errs: []string{"worker.toml:1: masters: empty"},
		},
		{
			name: "empty entry",
			toml: "name = \"n\"\npassword = \"p\"\nmasters = [\"a:1\", \" \"]\n",
			errs: []string{"worker.toml:3: masters: master 2 of 2 is empty"},
		},
		{
			name: "stray comma in master",
			toml: "master = \"a:1,\"\nname = \"n\"\npassword = \"p\"\n",
			errs: []string{"worker.toml:1: master: master 2 of 2 is empty"},
		},
		{
			name: "malformed entry",
			toml: "masters = [\"a:1\", \"b\"]\nname = \"n\"\npassword = \"p\"\n",
			errs: []string{`worker.toml:1: masters: master "b": want HOST:PORT`},
		},
		{
			name: "bad pin in an entry",
			toml: "masters = [\"a:1\", \"b:2#md5:00\"]\nname = \"n\"\npassword = \"p\"\n",
			errs: []string{`worker.toml:1: masters: master "b:2#md5:00": fingerprint "md5:00": must start with sha256:`},
		},
		{
			name: "pin and CA file in one entry: the pin wins",
			toml: "masters = [\"a:1\", \"b:2#sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\"]\nname = \"n\"\npassword = \"p\"\ntls_ca_file = \"nope.pem\"\n",
			errs: []string{"worker.toml: tls: master a:1: CA file: open "},
		},
		{
			name: "bad duration",
			toml: "master = \"m:1\"\nname = \"n\"\npassword = \"p\"\nmin_backoff = \"soon\"\n",
			errs: []string{"worker.toml:4:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "worker.toml"), []byte(tt.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfig(dir)
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("config (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			for _, e := range tt.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("error %q lacks %q", err, e)
				}
			}
		})
	}
}

// startMaster serves the protocol on loopback; workers' password is "pw".
func startMaster(t *testing.T) (string, chan *protocol.WorkerConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	attach := make(chan *protocol.WorkerConn, 10)
	s := protocol.NewServer(protocol.ServerConfig{
		Password: func(string) (string, bool) { return "pw", true },
		Attach:   func(c *protocol.WorkerConn) { attach <- c },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String(), attach
}

func waitAttach(t *testing.T, attach chan *protocol.WorkerConn) *protocol.WorkerConn {
	t.Helper()
	select {
	case c := <-attach:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("no worker attached")
		return nil
	}
}

// TestStartStop runs the daemon against a master in the test.
func TestStartStop(t *testing.T) {
	t.Parallel()
	addr, attach := startMaster(t)
	dir := filepath.Join(t.TempDir(), "w")
	if code, _, stderr := gbbWorker(t, "create-worker", dir, addr, "w1", "pw"); code != 0 {
		t.Fatalf("create-worker: %s", stderr)
	}
	code, stdout, stderr := gbbWorker(t, "start", dir)
	if code != 0 || !strings.Contains(stdout, "started") {
		t.Fatalf("start: exit %d: %s%s", code, stdout, stderr)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			gbbWorker(t, "stop", dir)
		}
	})
	c := waitAttach(t, attach)
	want := protocol.WorkerInfo{
		Admin: strings.TrimSpace(adminPlaceholder), Host: strings.TrimSpace(hostPlaceholder),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Version: "test-version", Basedir: dir, NumCPU: runtime.NumCPU(),
	}
	if diff := cmp.Diff(want, c.Info()); diff != "" {
		t.Errorf("worker info (-want +got):\n%s", diff)
	}
	var out strings.Builder
	res, err := c.Run(t.Context(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: "echo hi; pwd", Workdir: "build"}},
		func(o protocol.Output) {
			if o.Stream == protocol.Stdout {
				out.Write(o.Data)
			}
		})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if want := "hi\n" + filepath.Join(dir, "b", "build") + "\n"; out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
	// A second start refuses: a live worker holds the basedir.
	if code, _, stderr := gbbWorker(t, "start", dir); code != 1 || !strings.Contains(stderr, "is in use by another gbb-worker") {
		t.Errorf("second start: exit %d, %q", code, stderr)
	}
	// A first stop lets a running command go on (stop waits for it); a
	// second interrupts it: it is killed, and reported.
	started := make(chan struct{})
	type result struct {
		res protocol.Result
		err error
	}
	running := make(chan result, 1)
	go func() {
		var once bool
		res, err := c.Run(context.Background(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: "echo started; sleep 1000"}},
			func(o protocol.Output) {
				if o.Stream == protocol.Stdout && !once {
					once = true
					close(started)
				}
			})
		running <- result{res, err}
	}()
	<-started
	type exit struct {
		code   int
		stderr string
	}
	firstStop := make(chan exit, 1)
	go func() {
		code, _, stderr := gbbWorker(t, "stop", dir)
		firstStop <- exit{code, stderr}
	}()
	waitUntil(t, "the worker draining", func() bool {
		log, _ := os.ReadFile(filepath.Join(dir, "worker.log"))
		return bytes.Contains(log, []byte("the running commands finish first"))
	})
	select {
	case r := <-running:
		t.Fatalf("a first stop ended the running command: %+v, %v", r.res, r.err)
	default:
	}
	code, _, stderr = gbbWorker(t, "stop", dir)
	stopped = true
	if code != 0 {
		t.Fatalf("second stop: exit %d: %s", code, stderr)
	}
	if r := <-firstStop; r.code != 0 {
		t.Errorf("first stop: exit %d: %s", r.code, r.stderr)
	}
	if r := <-running; r.err != nil || !r.res.Interrupted || r.res.Signal != "KILL" {
		t.Errorf("command running at the second stop: %+v, %v; want interrupted by KILL", r.res, r.err)
	}
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Error("worker still connected after stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "worker.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("worker.pid after stop: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "worker.log"))
	if !bytes.Contains(log, []byte("connected to master")) {
		t.Errorf("worker.log:\n%s", log)
	}
	if code, _, stderr := gbbWorker(t, "stop", dir); code != 1 || !strings.Contains(stderr, "not running") {
		t.Errorf("stop when stopped: exit %d, %q", code, stderr)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	addr, _ := startMaster(t)
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := gbbWorker(t, "-master", addr, "-name", "w1", "-password", "nope", "-basedir", t.TempDir())
		if code != 1 || !strings.Contains(stderr, `worker "w1": wrong name or password`) {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("start", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "w")
		if code, _, stderr := gbbWorker(t, "create-worker", dir, addr, "w2", "nope"); code != 0 {
			t.Fatalf("create-worker: %s", stderr)
		}
		code, _, stderr := gbbWorker(t, "start", dir)
		if code != 1 || !strings.Contains(stderr, `worker "w2": wrong name or password`) {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}

// TestWarnsWithoutGit: a worker whose PATH has no git says at start that
// git steps will fail; one that has git says nothing about it.
func TestWarnsWithoutGit(t *testing.T) {
	t.Parallel()
	addr, _ := startMaster(t)
	for _, tc := range []struct {
		name, path string
		warn       bool
	}{
		{"no git", t.TempDir(), true},
		{"git", os.Getenv("PATH"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.warn {
				if _, err := exec.LookPath("git"); err != nil {
					t.Fatalf("git is needed by this test: %v", err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			// A wrong password ends the worker right after it starts.
			cmd := exec.CommandContext(ctx, binary, "-master", addr, "-name", "w1", "-password", "nope", "-basedir", t.TempDir())
			cmd.Env = append(os.Environ(), "PATH="+tc.path)
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), "wrong name or password") {
				t.Fatalf("the worker did not run to the refusal:\n%s", out)
			}
			if got := strings.Contains(string(out), "git not found in PATH: git steps will fail"); got != tc.warn {
				t.Errorf("warning about git = %v, want %v; output:\n%s", got, tc.warn, out)
			}
		})
	}
}

// TestRestart: restart (buildbot-worker has it) stops the running worker
// and starts a new one, which reconnects; it refuses a directory without
// worker.toml before stopping anything; and a command gbb-worker does not
// have is named as unknown, not answered with the usage alone.
func TestRestart(t *testing.T) {
	t.Parallel()
	addr, attach := startMaster(t)
	dir := filepath.Join(t.TempDir(), "w")
	if code, _, stderr := gbbWorker(t, "create-worker", dir, addr, "w1", "pw"); code != 0 {
		t.Fatalf("create-worker: %s", stderr)
	}
	if code, stdout, stderr := gbbWorker(t, "start", dir); code != 0 {
		t.Fatalf("start: exit %d: %s%s", code, stdout, stderr)
	}
	t.Cleanup(func() {
		// Not gbbWorker: t.Context() is done by now.
		if out, err := exec.Command(binary, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stop: %v\n%s", err, out)
		}
	})
	first := waitAttach(t, attach)
	pid1, err := os.ReadFile(filepath.Join(dir, "worker.pid"))
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := gbbWorker(t, "restart", dir)
	if code != 0 || !strings.Contains(stdout, "gbb-worker stopped") || !strings.Contains(stdout, "started") {
		t.Fatalf("restart: exit %d: %s%s", code, stdout, stderr)
	}
	select {
	case <-first.Done():
	case <-time.After(30 * time.Second):
		t.Error("the first worker is still connected after restart")
	}
	waitAttach(t, attach)
	pid2, err := os.ReadFile(filepath.Join(dir, "worker.pid"))
	if err != nil || bytes.Equal(pid1, pid2) {
		t.Errorf("worker.pid after restart = %q, %v; before %q", pid2, err, pid1)
	}

	missing := filepath.Join(t.TempDir(), "missing")
	if code, _, stderr := gbbWorker(t, "restart", missing); code != 1 || !strings.Contains(stderr, "not restarted") {
		t.Errorf("restart %s: exit %d, %q; want 1, not restarted", missing, code, stderr)
	}
	if code, _, stderr := gbbWorker(t, "frobnicate", dir); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("frobnicate: exit %d, %q; want 2 and unknown command", code, stderr)
	}
}

// TestBadLogFormat: a --log-format other than text and json is refused
// with the values it takes, in both forms.
func TestBadLogFormat(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-master", "127.0.0.1:1", "-name", "n", "-password", "p", "-log-format", "xml"},
		{"start", "--log-format", "xml", t.TempDir()},
	} {
		code, _, stderr := gbbWorker(t, args...)
		if code != 2 || !strings.Contains(stderr, `unknown log format "xml" (want "text" or "json")`) {
			t.Errorf("%v: exit %d, %q; want 2 and the formats named", args, code, stderr)
		}
	}
}

func TestParseMasters(t *testing.T) {
	t.Parallel()
	pin := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in   string
		want []masterEntry
		err  string
	}{
		{in: "a:9989", want: []masterEntry{{Addr: "a:9989"}}},
		{in: "a:9989,b:9989", want: []masterEntry{{Addr: "a:9989"}, {Addr: "b:9989"}}},
		{in: " a:9989 , [::1]:9989#" + pin, want: []masterEntry{{Addr: "a:9989"}, {Addr: "[::1]:9989", Fingerprint: pin}}},
		{in: "", err: "master 1 of 1 is empty"},
		{in: "a:1,,b:2", err: "master 2 of 3 is empty"},
		{in: "a:1,", err: "master 2 of 2 is empty"},
		{in: "a", err: `master "a": want HOST:PORT`},
		{in: ":9989", err: `master ":9989": no host`},
		{in: "a:http", err: `port "http" is not a number`},
		{in: "a:0", err: `port "0" is not a number from 1 to 65535`},
		{in: "a:1#sha256:12", err: `master "a:1#sha256:12": fingerprint "sha256:12"`},
		{in: "a:1,a:1", err: `master "a:1": given twice`},
	}
	for _, tt := range tests {
		got, err := parseMasters(splitMasters(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseMasters(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseMasters(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseMasters(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// TestMasterAddrsTLS: the TLS settings apply to every master; an entry's
// own pin replaces the fingerprint, CA file or system roots for it alone;
// each master's certificate must name its host.
func TestMasterAddrsTLS(t *testing.T) {
	t.Parallel()
	pin := "sha256:" + strings.Repeat("ab", 32)
	entries, err := parseMasters(splitMasters("a.example:1,b.example:2#" + pin))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := masterAddrs(entries, protocol.ClientTLS{System: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].TLS == nil || ms[1].TLS == nil {
		t.Fatalf("masterAddrs = %+v, want two with TLS", ms)
	}
	if ms[0].TLS.ServerName != "a.example" || ms[1].TLS.ServerName != "b.example" {
		t.Errorf("server names %q, %q; want each master's host", ms[0].TLS.ServerName, ms[1].TLS.ServerName)
	}
	if ms[0].TLS.InsecureSkipVerify || !ms[1].TLS.InsecureSkipVerify || ms[1].TLS.VerifyConnection == nil {
		t.Error("want the system roots for the first master and the pin (its own verification) for the second")
	}
	// Plaintext for the others, the pin's TLS for its entry.
	ms, err = masterAddrs(entries, protocol.ClientTLS{})
	if err != nil || ms[0].TLS != nil || ms[1].TLS == nil {
		t.Errorf("without TLS settings: %+v, %v; want plaintext to a, TLS to b", ms, err)
	}
}

// TestCreateWorkerMasters: MASTER may list several masters; worker.toml
// gets them as masters, and start reads them back.
func TestCreateWorkerMasters(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "w")
	code, _, stderr := gbbWorker(t, "create-worker", dir, "a:9989,b:9989", "w1", "pw")
	if code != 0 {
		t.Fatalf("create-worker: exit %d: %s", code, stderr)
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fileConfig{Masters: []string{"a:9989", "b:9989"}, Name: "w1", Password: "pw"}, cfg); diff != "" {
		t.Errorf("worker.toml (-want +got):\n%s", diff)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	code, _, stderr = gbbWorker(t, "create-worker", bad, "a:9989,", "w1", "pw")
	if code != 1 || !strings.Contains(stderr, "master 2 of 2 is empty") {
		t.Errorf("create-worker with a stray comma: exit %d, %q; want a refusal", code, stderr)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("the refused create-worker made %s", bad)
	}
}

// TestDirectMasterErrors: a malformed -master is refused before anything
// runs.
func TestDirectMasterErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ master, want string }{
		{"127.0.0.1:1,,127.0.0.1:2", "-master: master 2 of 3 is empty"},
		{"127.0.0.1:1,127.0.0.1", `-master: master "127.0.0.1": want HOST:PORT`},
		{"127.0.0.1:1,127.0.0.1:1", `-master: master "127.0.0.1:1": given twice`},
	} {
		code, _, stderr := gbbWorker(t, "-master", tt.master, "-name", "w", "-password", "pw", "-basedir", t.TempDir())
		if code != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("-master %q: exit %d, %q; want 1 and %q", tt.master, code, stderr, tt.want)
		}
	}
}

// TestStartSeveralMasters: a worker whose worker.toml lists a master that
// does not answer, then one that does, serves the second; one whose
// masters all refuse its password exits 1, naming both.
func TestStartSeveralMasters(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	addr, attach := startMaster(t)
	dir := filepath.Join(t.TempDir(), "w")
	if code, _, stderr := gbbWorker(t, "create-worker", dir, dead+","+addr, "w1", "pw"); code != 0 {
		t.Fatalf("create-worker: %s", stderr)
	}
	if code, stdout, stderr := gbbWorker(t, "start", dir); code != 0 {
		t.Fatalf("start: exit %d: %s%s", code, stdout, stderr)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			gbbWorker(t, "stop", dir)
		}
	})
	c := waitAttach(t, attach)
	if res, err := c.Run(t.Context(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Argv: []string{"true"}}}, func(protocol.Output) {}); err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	if code, _, stderr := gbbWorker(t, "stop", dir); code != 0 {
		t.Errorf("stop: exit %d: %s", code, stderr)
	}
	stopped = true

	addr2, _ := startMaster(t)
	bad := filepath.Join(t.TempDir(), "bad")
	if code, _, stderr := gbbWorker(t, "create-worker", bad, addr+","+addr2, "w2", "nope"); code != 0 {
		t.Fatalf("create-worker: %s", stderr)
	}
	code, _, stderr := gbbWorker(t, "start", bad)
	if code != 1 || strings.Count(stderr, `worker "w2": wrong name or password`) != 2 {
		t.Errorf("start with a wrong password at both masters: exit %d, stderr:\n%s", code, stderr)
	}
}
