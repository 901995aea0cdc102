package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// messages returns the problems in err, formatted, after checking that
// err's text lists the same.
func messages(t *testing.T, err error) []string {
	t.Helper()
	var got []string
	for _, e := range Errors(err) {
		got = append(got, e.Error())
	}
	if err != nil && err.Error() != strings.Join(got, "\n") {
		t.Errorf("err.Error() = %q, want the errors joined by newlines: %q", err, got)
	}
	return got
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string // a leading newline is dropped, so line 1 is the line after the backquote
		want []string
	}{
		{
			name: "syntax error",
			toml: `
title = "x"
title_url =
`,
			want: []string{`master.toml:2: title_url: expected value but found '\n' instead`},
		},
		{
			name: "key defined twice",
			toml: `
title = "a"
title = "b"
`,
			want: []string{`master.toml:2: title: Key 'title' has already been defined.`},
		},
		{
			name: "unknown top-level keys",
			toml: `
titel = "x"
[wwww]
port = 1
`,
			want: []string{
				`master.toml:1: titel: unknown key`,
				`master.toml:2: wwww: unknown key`,
			},
		},
		{
			name: "unknown key in a worker",
			toml: `
[[workers]]
name = "w"
pasword = "x"
`,
			want: []string{
				`master.toml:1: workers[0].password: required (or password_file)`,
				`master.toml:3: workers[0].pasword: unknown key`,
			},
		},
		{
			name: "port of the wrong type",
			toml: `
title = "t"

[protocols.grpc]
port = "9989"
`,
			want: []string{`master.toml:4: protocols.grpc.port: expected an integer, got string`},
		},
		{
			name: "port out of range and bad interface type",
			toml: `
[www]
port = 70000
interface = 127
`,
			want: []string{
				`master.toml:2: www.port: port 70000 out of range (0-65535)`,
				`master.toml:3: www.interface: expected a string, got integer`,
			},
		},
		{
			name: "unknown protocol",
			toml: `
[protocols.amqp]
port = 9989
`,
			want: []string{`master.toml:1: protocols.amqp: unknown key`},
		},
		{
			name: "tables of the wrong type",
			toml: `
www = 8010
workers = "w"

[change_source]
type = "git_poller"
`,
			want: []string{
				`master.toml:1: www: expected a table, got integer`,
				`master.toml:2: workers: expected an array of tables ([[workers]]), got string`,
				`master.toml:4: change_source: expected an array of tables ([[change_source]]), got table`,
			},
		},
		{
			name: "database url",
			toml: `
[db]
url = "sqlite:///state.sqlite"
`,
			want: []string{`master.toml:2: db.url: unsupported database "sqlite://…": write "bbolt:PATH", or PostgreSQL as "postgresql://USER@HOST/DATABASE" (not a libpq "host=… dbname=…" string)`},
		},
		{
			name: "bbolt without a path",
			toml: `
db = { url = "bbolt:" }
`,
			want: []string{`master.toml:1: db.url: missing the path after "bbolt:"`},
		},
		{
			name: "buildbot_url",
			toml: `
buildbot_url = "localhost:8010"
`,
			want: []string{`master.toml:1: buildbot_url: "localhost:8010" is not an http or https URL`},
		},
		{
			name: "passwords",
			toml: `
[[workers]]
name = "both"
password = "x"
password_file = "x.pass"

[[workers]]
name = "missing-file"
password_file = "missing.pass"

[[workers]]
name = "empty"
password = ""
max_builds = -1

[[workers]]
name = "float"
password = "p"
max_builds = 1.5
`,
			want: []string{
				`master.toml:4: workers[0].password_file: set either password or password_file, not both`,
				`master.toml:8: workers[1].password_file: read missing.pass: no such file or directory`,
				`master.toml:12: workers[2].password: must not be empty`,
				`master.toml:13: workers[2].max_builds: must not be negative`,
				`master.toml:18: workers[3].max_builds: expected an integer, got float`,
			},
		},
		{
			name: "worker names",
			toml: `
[[workers]]
name = "w"
password = "p"

[[workers]]
name = "w"
password = "p"

[[workers]]
password = "p"

[[workers]]
name = ""
password = "p"

[[workers]]
name = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
password = "p"
`,
			want: []string{
				`master.toml:6: workers[1].name: duplicate worker name "w" (first at line 2)`,
				`master.toml:9: workers[2].name: required`,
				`master.toml:13: workers[3].name: must not be empty`,
				`master.toml:17: workers[4].name: 129 bytes long, more than 128: a worker could not say it in its hello`,
			},
		},
		{
			name: "builders",
			toml: `
[[workers]]
name = "w"
password = "p"

[[builders]]
name = "runtests"
worker_names = ["w", "x"]

[[builders]]
name = "runtests"
worker_names = []

[[builders]]
name = "other"
tags = ["a", 1]
`,
			want: []string{
				`master.toml:7: builders[0].worker_names: unknown worker "x"`,
				`master.toml:10: builders[1].name: duplicate builder name "runtests" (first at line 6)`,
				`master.toml:11: builders[1].worker_names: must not be empty`,
				`master.toml:13: builders[2].worker_names: required`,
				`master.toml:15: builders[2].tags[1]: expected a string, got integer`,
			},
		},
		{
			name: "builders sharing a directory on the worker",
			toml: `
[[workers]]
name = "w"
password = "p"

[[builders]]
name = "linux/amd64"
worker_names = ["w"]

[[builders]]
name = "linux amd64"
worker_names = ["w"]
`,
			want: []string{
				`master.toml:10: builders[1].name: builders "linux/amd64" and "linux amd64" would share the directory "linux_amd64" on their workers (a name's blanks, "/" and other punctuation become "_", as in buildbot): rename one`,
			},
		},
		{
			name: "schedulers",
			toml: `
[[schedulers]]
type = "single_branch"
name = "all"
builder_names = [
  "runtests",
  "runtest",
]

[[schedulers]]
type = "force"
name = "all"
branch = "main"
tree_stable_timer = 60
builder_names = []

[[schedulers]]
type = "hourly"
builder_names = "runtests"

[[builders]]
name = "runtests"
worker_names = ["w"]

[[workers]]
name = "w"
password = "p"
`,
			want: []string{
				`master.toml:1: schedulers[0].branch: required (or another change filter key: branch_re, project, repository, category, codebase)`,
				`master.toml:6: schedulers[0].builder_names: unknown builder "runtest"`,
				`master.toml:11: schedulers[1].name: duplicate scheduler name "all" (first at line 3)`,
				`master.toml:12: schedulers[1].branch: not for a force scheduler`,
				`master.toml:13: schedulers[1].tree_stable_timer: not for a force scheduler`,
				`master.toml:14: schedulers[1].builder_names: must not be empty`,
				`master.toml:16: schedulers[2].name: required`,
				`master.toml:17: schedulers[2].type: unknown scheduler type "hourly" (want "single_branch", "any_branch", "force", "periodic", "nightly", "triggerable", "dependent", "nightly_triggerable")`,
				`master.toml:18: schedulers[2].builder_names: expected an array of strings, got string`,
			},
		},
		{
			name: "change sources",
			toml: `
[[change_source]]
type = "git_poller"
branches = "master"
poll_interval = "5 minutes"

[[change_source]]
type = "svn_poller"
repourl = "svn://example.org/repo"
poll_interval = 0

[[change_source]]
repourl = "https://example.org/repo.git"
poll_interval = true
pollInterval = 60
`,
			want: []string{
				`master.toml:1: change_source[0].repourl: required`,
				`master.toml:3: change_source[0].branches: expected an array of strings or true, got string`,
				`master.toml:4: change_source[0].poll_interval: invalid duration "5 minutes" (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`,
				`master.toml:7: change_source[1].type: unknown change source type "svn_poller" (want "git_poller")`,
				`master.toml:9: change_source[1].poll_interval: must be positive`,
				`master.toml:11: change_source[2].type: required`,
				`master.toml:13: change_source[2].poll_interval: expected a duration (a string such as "5m" or an integer number of seconds), got boolean`,
				`master.toml:14: change_source[2].pollInterval: unknown key`,
			},
		},
		{
			name: "change source mirrors and timeouts",
			toml: `
[[change_source]]
type = "git_poller"
name = "p/one"
repourl = "https://example.org/one.git"
poll_timeout = "0s"

[[change_source]]
type = "git_poller"
name = "p:one"
repourl = "https://example.org/one.git"

[[change_source]]
type = "git_poller"
name = "three"
repourl = "https://example.org/three.git"
workdir = "gitpoller-work/p_one"

[[change_source]]
type = "git_poller"
name = "four"
repourl = "https://example.org/four.git"
workdir = "gitpoller-work/p_one/inner"

[[change_source]]
type = "git_poller"
name = "five"
repourl = "https://example.org/five.git"
workdir = "mirrors/five"
poll_timeout = "90s"
`,
			want: []string{
				`master.toml:5: change_source[0].poll_timeout: must be positive`,
				`master.toml:9: change_source[1].name: the mirror of change source "p:one", DIR/gitpoller-work/p_one, is the mirror of change source "p/one" (line 1): give each its own workdir (or a name that differs in more than the characters a directory name drops)`,
				`master.toml:16: change_source[2].workdir: the mirror of change source "three", DIR/gitpoller-work/p_one, is the mirror of change source "p/one" (line 1): give each its own workdir (or a name that differs in more than the characters a directory name drops)`,
				`master.toml:22: change_source[3].workdir: the mirror of change source "four", DIR/gitpoller-work/p_one/inner, lies inside the mirror of change source "p/one" (line 1): give each its own workdir (or a name that differs in more than the characters a directory name drops)`,
			},
		},
		{
			name: "steps",
			toml: `
[[workers]]
name = "w"
password = "p"

[[builders]]
name = "b"
worker_names = ["w"]

  [[builders.steps]]
  type = "git"
  mode = "fresh"
  command = "make"

  [[builders.steps]]
  type = "shell"
  repourl = "https://example.org/repo.git"
  timeout = -5
  max_time = "1x"
  halt_on_failure = "yes"

  [[builders.steps]]
  type = "compile"
  command = "make"
  hello = 1

  [[builders.steps]]
  name = "untyped"
`,
			want: []string{
				`master.toml:9: builders[0].steps[0].repourl: required`,
				`master.toml:11: builders[0].steps[0].mode: unknown git mode "fresh" (want "incremental", "full")`,
				`master.toml:12: builders[0].steps[0].command: not allowed in a git step`,
				`master.toml:14: builders[0].steps[1].command: required for a shell step`,
				`master.toml:16: builders[0].steps[1].repourl: not allowed in a shell step`,
				`master.toml:17: builders[0].steps[1].timeout: must not be negative`,
				`master.toml:18: builders[0].steps[1].max_time: invalid duration "1x" (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`,
				`master.toml:19: builders[0].steps[1].halt_on_failure: expected a boolean, got string`,
				`master.toml:22: builders[0].steps[2].type: unknown step type "compile" (want "shell", "git", "trigger", "directory_upload", "file_download", "file_upload", "json_properties_download", "json_string_download", "mkdir", "multiple_file_upload", "remove_file", "rmdir", "shell_sequence", "string_download", "log_message", "master_shell_command", "set_property", "set_property_from_command")`,
				`master.toml:24: builders[0].steps[2].hello: unknown key`,
				`master.toml:26: builders[0].steps[3].type: required`,
			},
		},
		{
			name: "commands and env",
			toml: `
[[workers]]
name = "w"
password = "p"

[[builders]]
name = "b"
worker_names = ["w"]
steps = [
  { type = "shell", command = 5 },
  { type = "shell", command = [] },
  { type = "shell", command = ["make", 1], env = { A = "1", B = 2 } },
  { type = "shell", command = "  " },
]
`,
			want: []string{
				`master.toml:9: builders[0].steps[0].command: expected a string or an array of strings, got integer`,
				`master.toml:10: builders[0].steps[1].command: must not be empty`,
				`master.toml:11: builders[0].steps[2].env.B: expected a string or an array of strings (joined with ":"), got integer`,
				`master.toml:11: builders[0].steps[2].command: expected an array of strings, got integer at index 1`,
				`master.toml:12: builders[0].steps[3].command: must not be empty`,
			},
		},
		{
			name: "lines inside nested arrays of tables",
			toml: `
[[workers]]
name = "w"
password = "p"

[[builders]]
name = "a"
worker_names = ["w"]

  [[builders.steps]]
  type = "shell"
  command = "true"

  [[builders.steps]]
  type = "shell"
  command = "true"

[[builders]]
name = "b"
worker_names = ["w"]

  [[builders.steps]]
  type = "shell"
  command = "true"

  [[builders.steps]]
  type = "shell"
  comand = "true"

  [builders.steps.env]
  PATH = "/bin"
  HOME = false
`,
			want: []string{
				`master.toml:25: builders[1].steps[1].command: required for a shell step`,
				`master.toml:27: builders[1].steps[1].comand: unknown key`,
				`master.toml:31: builders[1].steps[1].env.HOME: expected a string or an array of strings (joined with ":"), got boolean`,
			},
		},
		{
			name: "quoted and dotted keys",
			toml: `
"title" = "t"
www.port = "x"
protocols."grpc".porte = 1
[[workers]]
name = "w"
"pass word" = "p"
`,
			want: []string{
				`master.toml:2: www.port: expected an integer, got string`,
				`master.toml:3: protocols.grpc.porte: unknown key`,
				`master.toml:4: workers[0].password: required (or password_file)`,
				`master.toml:6: workers[0]."pass word": unknown key`,
			},
		},
		{
			name: "many problems at once",
			toml: `
title = 1

[protocols.grpc]
port = -1

[[workers]]
name = "example-worker"
password = "pass"
password_file = "x"

[[schedulers]]
type = "single_branch"
name = "all"
branch = "master"
tree_stable_timer = "soon"
builder_names = ["runtest"]

[[builders]]
name = "runtests"
worker_names = ["example-worker", "other-worker"]

  [[builders.steps]]
  type = "git"
  repourl = "https://github.com/buildbot/hello-world.git"
  mode = "increm"

  [[builders.steps]]
  type = "shell"
  env = { PYTHONPATH = "." }
  flunk_on_failure = 0
`,
			want: []string{
				`master.toml:1: title: expected a string, got integer`,
				`master.toml:4: protocols.grpc.port: port -1 out of range (0-65535)`,
				`master.toml:9: workers[0].password_file: set either password or password_file, not both`,
				`master.toml:15: schedulers[0].tree_stable_timer: invalid duration "soon" (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`,
				`master.toml:16: schedulers[0].builder_names: unknown builder "runtest"`,
				`master.toml:20: builders[0].worker_names: unknown worker "other-worker"`,
				`master.toml:25: builders[0].steps[0].mode: unknown git mode "increm" (want "incremental", "full")`,
				`master.toml:27: builders[0].steps[1].command: required for a shell step`,
				`master.toml:30: builders[0].steps[1].flunk_on_failure: expected a boolean, got integer`,
			},
		},
		{
			name: "git step",
			toml: `
[[workers]]
name = "w"
password = "p"

[[builders]]
name = "b"
worker_names = ["w"]

  [[builders.steps]]
  type = "git"
  repourl = "r"
  method = "fresh"
  shallow = -1

  [[builders.steps]]
  type = "git"
  repourl = "r"
  mode = "full"
  method = "rsync"
  shallow = "deep"

  [[builders.steps]]
  type = "shell"
  command = "make"
  method = "fresh"
`,
			want: []string{
				`master.toml:12: builders[0].steps[0].method: only for mode = "full"`,
				`master.toml:13: builders[0].steps[0].shallow: must not be negative`,
				`master.toml:19: builders[0].steps[1].method: unknown git method "rsync" (want "clobber", "fresh", "clean", "copy")`,
				`master.toml:20: builders[0].steps[1].shallow: expected a boolean or an integer depth, got string`,
				`master.toml:25: builders[0].steps[2].method: not allowed in a shell step`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("master.toml", []byte(strings.TrimPrefix(tc.toml, "\n")))
			if cfg != nil {
				t.Errorf("Parse returned a config with an error")
			}
			// A mirror is named by its absolute path: DIR is the
			// directory of master.toml, here the test's.
			wd, _ := os.Getwd()
			want := slices.Clone(tc.want)
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "DIR", wd)
			}
			if diff := cmp.Diff(want, messages(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "m.toml", Line: 3, Key: "www.port", Msg: "bad"}, "m.toml:3: www.port: bad"},
		{&Error{File: "m.toml", Line: 3, Msg: "bad"}, "m.toml:3: bad"},
		{&Error{File: "m.toml", Key: "k", Msg: "bad"}, "m.toml: k: bad"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestErrorsUnwrapsWrapped(t *testing.T) {
	t.Parallel()
	_, err := Parse("m.toml", []byte("a = 1\nb = 2\n"))
	wrapped := fmt.Errorf("checkconfig: %w", err)
	got := Errors(wrapped)
	want := []*Error{
		{File: "m.toml", Line: 1, Key: "a", Msg: "unknown key"},
		{File: "m.toml", Line: 2, Key: "b", Msg: "unknown key"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Errors (-want +got):\n%s", diff)
	}
	var e *Error
	if !errors.As(wrapped, &e) || e.Key != "a" {
		t.Errorf("errors.As found %v, want the first error", e)
	}
	if Errors(nil) != nil || Errors(errors.New("x")) != nil {
		t.Errorf("Errors of no config error is not nil")
	}
}
