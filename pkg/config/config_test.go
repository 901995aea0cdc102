package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/masterfiles"
)

// lineOf returns the 1-based line of the n-th (from 0) line of src that is
// text once trimmed.
func lineOf(t *testing.T, src, text string, n int) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.TrimSpace(l) == text {
			if n == 0 {
				return i + 1
			}
			n--
		}
	}
	t.Fatalf("no line %q in the source", text)
	return 0
}

func mustParse(t *testing.T, file, src string) *Config {
	t.Helper()
	cfg, err := Parse(file, []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestSample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.toml")
	if err := os.WriteFile(path, []byte(Sample), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(Sample): %v", err)
	}
	const repo = "https://github.com/buildbot/hello-world.git"
	want := &Config{
		File:        path,
		Title:       "Hello World CI",
		TitleURL:    "https://buildbot.github.io/hello-world/",
		BuildbotURL: "http://localhost:8010/",
		Protocols:   Protocols{GRPC: GRPC{Port: 9989, KeepaliveInterval: DefaultKeepaliveInterval, KeepaliveTimeout: DefaultKeepaliveTimeout, Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress}, TLS: GRPCTLS{Mode: TLSAuto}}},
		WWW:         WWW{Port: 8010, IdleTimeout: DefaultIdleTimeout, Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWebPerAddress}},
		DB:          DB{URL: "bbolt:state.db"},
		KeyFiles:    []masterfiles.File{{Path: filepath.Join(dir, AutoTLSDir), What: `the directory of tls = "auto"'s CA and keys`, Dir: true}},
		Workers: []Worker{{
			Name:     "example-worker",
			Password: "pass",
			Line:     lineOf(t, Sample, "[[workers]]", 0),
		}},
		ChangeSources: []ChangeSource{{
			Type:         "git_poller",
			Name:         "GitPoller:" + repo,
			RepoURL:      repo,
			Branches:     []string{"master"},
			PollInterval: Duration{300 * time.Second}, PollTimeout: Duration{DefaultPollTimeout},
			Workdir: "gitpoller-work/GitPoller_https_github.com_buildbot_hello-world.git",
			Line:    lineOf(t, Sample, "[[change_source]]", 0),
		}},
		Schedulers: []Scheduler{
			{
				Type:         "single_branch",
				Name:         "all",
				BuilderNames: []string{"runtests"},
				Branch:       "master",
				Line:         lineOf(t, Sample, "[[schedulers]]", 0),
			},
			{
				Type:         "force",
				Name:         "force",
				BuilderNames: []string{"runtests"},
				Reason:       "force build",
				Line:         lineOf(t, Sample, "[[schedulers]]", 1),
			},
		},
		Builders: []Builder{{
			Name:        "runtests",
			WorkerNames: []string{"example-worker"},
			Workdir:     "build",
			Line:        lineOf(t, Sample, "[[builders]]", 0),
			Steps: []Step{
				{
					Type:           "git",
					Name:           "git",
					Workdir:        "build",
					Timeout:        Duration{1200 * time.Second},
					HaltOnFailure:  true,
					FlunkOnFailure: true,
					RepoURL:        repo,
					Mode:           "incremental",
					Line:           lineOf(t, Sample, "[[builders.steps]]", 0),
				},
				{
					Type:           "shell",
					Name:           "shell",
					Command:        Command{Argv: []string{"trial", "hello"}},
					Workdir:        "build",
					Env:            map[string]string{"PYTHONPATH": "."},
					Timeout:        Duration{1200 * time.Second},
					FlunkOnFailure: true,
					Line:           lineOf(t, Sample, "[[builders.steps]]", 1),
				},
			},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Sample (-want +got):\n%s", diff)
	}
	if got, want := got.DB.BoltPath(dir), filepath.Join(dir, "state.db"); got != want {
		t.Errorf("BoltPath = %q, want %q", got, want)
	}
	if got, want := got.Protocols.GRPC.Addr(), ":9989"; got != want {
		t.Errorf("GRPC.Addr() = %q, want %q", got, want)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	got := mustParse(t, "master.toml", `
[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
  [[builders.steps]]
  type = "shell"
  command = "make"
  [[builders.steps]]
  type = "git"
  repourl = "https://example.org/r.git"
[[builders]]
name = "c"
worker_names = ["w"]
workdir = "src"
  [[builders.steps]]
  type = "shell"
  command = "make"
  [[builders.steps]]
  type = "shell"
  name = "test"
  command = "make test"
  workdir = "src/sub"
  timeout = 0
  max_time = "1h"
  halt_on_failure = true
  flunk_on_failure = false
  warn_on_failure = true
  always_run = true
  [[builders.steps]]
  type = "git"
  repourl = "https://example.org/r.git"
  mode = "full"
  branch = "main"
  halt_on_failure = false
[[change_source]]
type = "git_poller"
repourl = "https://example.org/r.git"
[[schedulers]]
type = "any_branch"
name = "any"
builder_names = ["b", "c"]
tree_stable_timer = 60
`)
	timeout := Duration{1200 * time.Second}
	want := &Config{
		File:        "master.toml",
		BuildbotURL: "http://localhost:8010/",
		Protocols:   Protocols{GRPC: GRPC{Port: 9989, KeepaliveInterval: DefaultKeepaliveInterval, KeepaliveTimeout: DefaultKeepaliveTimeout, Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress}, TLS: GRPCTLS{Mode: TLSOff}}},
		WWW:         WWW{Port: 8010, IdleTimeout: DefaultIdleTimeout, Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWebPerAddress}},
		DB:          DB{URL: "bbolt:state.db"},
		Workers:     []Worker{{Name: "w", Password: "p", Line: 2}},
		ChangeSources: []ChangeSource{{
			Type: "git_poller", Name: "GitPoller:https://example.org/r.git", RepoURL: "https://example.org/r.git",
			PollInterval: Duration{10 * time.Minute}, PollTimeout: Duration{DefaultPollTimeout}, Workdir: "gitpoller-work/GitPoller_https_example.org_r.git", Line: 38,
		}},
		Schedulers: []Scheduler{{
			Type: "any_branch", Name: "any", BuilderNames: []string{"b", "c"},
			TreeStableTimer: Duration{time.Minute}, Line: 41,
		}},
		Builders: []Builder{
			{
				Name: "b", WorkerNames: []string{"w"}, Workdir: "build", Line: 5,
				Steps: []Step{
					{Type: "shell", Name: "shell", Command: Command{Script: "make"}, Workdir: "build", Timeout: timeout, FlunkOnFailure: true, Line: 8},
					{Type: "git", Name: "git", Workdir: "build", Timeout: timeout, HaltOnFailure: true, FlunkOnFailure: true, RepoURL: "https://example.org/r.git", Mode: "incremental", Line: 11},
				},
			},
			{
				Name: "c", WorkerNames: []string{"w"}, Workdir: "src", Line: 14,
				Steps: []Step{
					{Type: "shell", Name: "shell", Command: Command{Script: "make"}, Workdir: "src", Timeout: timeout, FlunkOnFailure: true, Line: 18},
					{
						Type: "shell", Name: "test", Command: Command{Script: "make test"}, Workdir: "src/sub",
						MaxTime: Duration{time.Hour}, HaltOnFailure: true, WarnOnFailure: true, AlwaysRun: true, Line: 21,
					},
					{Type: "git", Name: "git", Workdir: "src", Timeout: timeout, FlunkOnFailure: true, RepoURL: "https://example.org/r.git", Mode: "full", Method: "clobber", Branch: "main", Line: 32},
				},
			},
		},
	}
	// The source starts with a newline: every line above is one more than
	// its place in the raw string.
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestTopLevel(t *testing.T) {
	t.Parallel()
	got := mustParse(t, "m.toml", `
buildbot_url = "https://ci.example.org/buildbot"
[protocols.grpc]
port = 0
interface = "127.0.0.1"
[www]
port = 8080
interface = "::1"
[db]
url = "bbolt:/var/db/gbb/state.db"
`)
	want := &Config{
		File:        "m.toml",
		BuildbotURL: "https://ci.example.org/buildbot/",
		Protocols:   Protocols{GRPC: GRPC{Port: 0, Interface: "127.0.0.1", KeepaliveInterval: DefaultKeepaliveInterval, KeepaliveTimeout: DefaultKeepaliveTimeout, Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWorkerPerAddress}, TLS: GRPCTLS{Mode: TLSOff}}},
		WWW:         WWW{Port: 8080, Interface: "::1", IdleTimeout: DefaultIdleTimeout, Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWebPerAddress}},
		DB:          DB{URL: "bbolt:/var/db/gbb/state.db"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ got, want string }{
		{got.Protocols.GRPC.Addr(), "127.0.0.1:0"},
		{got.WWW.Addr(), "[::1]:8080"},
		{got.DB.BoltPath("/elsewhere"), "/var/db/gbb/state.db"},
		{DB{URL: "bbolt:sub/../state.db"}.BoltPath("/m"), "/m/state.db"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := (DB{URL: DefaultDBURL}).BoltPath("rel"), filepath.Join(wd, "rel", "state.db"); got != want {
		t.Errorf("BoltPath of a relative basedir = %q, want %q", got, want)
	}
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{"a.pass": "secret\n", "b.pass": "s3cret\r\n", "empty.pass": "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := `
[[workers]]
name = "a"
password_file = "a.pass"
max_builds = 2
[[workers]]
name = "b"
password_file = "` + filepath.Join(dir, "b.pass") + `"
`
	// a.pass is relative to the config file's directory.
	got := mustParse(t, filepath.Join(dir, "master.toml"), src)
	want := []Worker{
		{Name: "a", Password: "secret", PasswordFile: "a.pass", MaxBuilds: 2, Line: 2},
		{Name: "b", Password: "s3cret", PasswordFile: filepath.Join(dir, "b.pass"), Line: 6},
	}
	if diff := cmp.Diff(want, got.Workers); diff != "" {
		t.Errorf("workers (-want +got):\n%s", diff)
	}

	_, err := Parse(filepath.Join(dir, "master.toml"), []byte(`
[[workers]]
name = "e"
password_file = "empty.pass"
[[workers]]
name = "d"
password_file = "."
`))
	wantErrs := []string{
		filepath.Join(dir, "master.toml") + ":4: workers[0].password_file: " + filepath.Join(dir, "empty.pass") + " is empty",
		filepath.Join(dir, "master.toml") + ":7: workers[1].password_file: read " + dir + ": is a directory",
	}
	if diff := cmp.Diff(wantErrs, messages(t, err)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		toml   string
		want   Command
		str    string
		isZero bool
	}{
		{`command = "make && make test"`, Command{Script: "make && make test"}, "make && make test", false},
		{`command = ["trial", "hello world"]`, Command{Argv: []string{"trial", "hello world"}}, "trial hello world", false},
		{"command = '''\nset -e\nmake\n'''", Command{Script: "set -e\nmake\n"}, "set -e\nmake\n", false},
	}
	for _, tc := range tests {
		src := "[[workers]]\nname = \"w\"\npassword = \"p\"\n[[builders]]\nname = \"b\"\nworker_names = [\"w\"]\n[[builders.steps]]\ntype = \"shell\"\n" + tc.toml + "\n"
		cfg := mustParse(t, "m.toml", src)
		got := cfg.Builders[0].Steps[0].Command
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.toml, diff)
		}
		if got.String() != tc.str || got.IsZero() != tc.isZero {
			t.Errorf("%s: String() = %q, IsZero() = %v", tc.toml, got.String(), got.IsZero())
		}
	}
	if !(Command{}).IsZero() {
		t.Errorf("Command{}.IsZero() = false")
	}

	// Command and Duration decode with BurntSushi/toml directly too.
	var v struct {
		Command Command
		D       Duration
	}
	if _, err := toml.Decode("command = [\"a\", \"b\"]\nd = \"1h30m\"\n", &v); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Command{Argv: []string{"a", "b"}}, v.Command); diff != "" || v.D.Duration != 90*time.Minute {
		t.Errorf("toml.Decode: command %v, duration %v", v.Command, v.D)
	}
	if _, err := toml.Decode("command = 1\n", &v); err == nil {
		t.Errorf("toml.Decode of command = 1 succeeded")
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		toml string
		want time.Duration
		err  string
	}{
		{`"300s"`, 300 * time.Second, ""},
		{`"5m"`, 5 * time.Minute, ""},
		{`"1h30m"`, 90 * time.Minute, ""},
		{`"1.5s"`, 1500 * time.Millisecond, ""},
		{`"0s"`, 0, ""},
		{`0`, 0, ""},
		{`300`, 300 * time.Second, ""},
		{`"-1s"`, 0, "must not be negative"},
		{`"300"`, 0, `invalid duration "300" (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`},
		{`1.5`, 0, `expected a duration (a string such as "5m" or an integer number of seconds), got float`},
		{`9223372036854775807`, 0, "9223372036854775807 seconds is out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.toml, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("m.toml", []byte("[[schedulers]]\ntype = \"force\"\nname = \"f\"\nbuilder_names = [\"b\"]\n[[builders]]\nname = \"b\"\nworker_names = [\"w\"]\n"+
				"[[workers]]\nname = \"w\"\npassword = \"p\"\n"+
				"[[change_source]]\ntype = \"git_poller\"\nrepourl = \"r\"\n"+
				"[[builders.steps]]\ntype = \"shell\"\ncommand = \"true\"\nmax_time = "+tc.toml+"\n"))
			if tc.err != "" {
				want := []string{"m.toml:17: builders[0].steps[0].max_time: " + tc.err}
				if diff := cmp.Diff(want, messages(t, err)); diff != "" {
					t.Errorf("errors (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.Builders[0].Steps[0].MaxTime.Duration; got != tc.want {
				t.Errorf("max_time = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "master.toml"))
	if !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// TestCollapseRequests: a builder's collapse_requests is its own key, then
// the global one, then false (buildbot's getCollapseRequestsFn order; its
// default is true, gbb's false).
func TestCollapseRequests(t *testing.T) {
	t.Parallel()
	const builders = `
[[workers]]
name = "w"
password = "p"
[[builders]]
name = "own-true"
worker_names = ["w"]
collapse_requests = true
[[builders]]
name = "own-false"
worker_names = ["w"]
collapse_requests = false
[[builders]]
name = "global"
worker_names = ["w"]
`
	for _, tc := range []struct {
		name, global string
		want         map[string]bool
	}{
		{"no global key", "", map[string]bool{"own-true": true, "own-false": false, "global": false}},
		{"global true", "collapse_requests = true\n", map[string]bool{"own-true": true, "own-false": false, "global": true}},
		{"global false", "collapse_requests = false\n", map[string]bool{"own-true": true, "own-false": false, "global": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustParse(t, "m.toml", tc.global+builders)
			got := map[string]bool{}
			for _, b := range cfg.Builders {
				got[b.Name] = b.CollapseRequests
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("collapse_requests by builder (-want +got):\n%s", diff)
			}
			if want := tc.global == "collapse_requests = true\n"; cfg.CollapseRequests != want {
				t.Errorf("Config.CollapseRequests = %v, want %v", cfg.CollapseRequests, want)
			}
		})
	}
	_, err := Parse("m.toml", []byte("collapse_requests = \"yes\"\n"+builders))
	if err == nil || !strings.Contains(err.Error(), "m.toml:1") || !strings.Contains(err.Error(), "collapse_requests") {
		t.Errorf("a string collapse_requests: error %v, want one naming m.toml:1 and the key", err)
	}
}

// TestWorkerDir: a builder's directory on its workers is its name with the
// characters buildbot's safeTranslate replaces made "_", so that any name
// builds in one plain directory (the values are what buildbot 3.7's
// safeTranslate gives).
func TestWorkerDir(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"runtests":                "runtests",
		"linux/amd64 (go 1.26)":   "linux_amd64__go_1_26_",
		"..":                      "__",
		`a\b"c`:                   `a_b"c`,
		"tab\there":               "tab_here",
		"x!#$%&'()*+,./:;<=>?@[]": "x______________________",
		"^{|}~-_é":                "_____-_é",
	} {
		if got := (Builder{Name: name}).WorkerDir(); got != want {
			t.Errorf("WorkerDir(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestSampleCommentedExamples: the sample's commented [[secrets_providers]]
// and [[reporters]], uncommented, are a valid config.
func TestSampleCommentedExamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	i := strings.Index(Sample, "####### SECRETS")
	if i < 0 || !strings.Contains(Sample[i:], "# [[reporters]]") || !strings.Contains(Sample[i:], "# [[secrets_providers]]") {
		t.Fatal("the sample has no commented [[secrets_providers]] and [[reporters]]")
	}
	key := regexp.MustCompile(`^# (\[\[[a-z_]+\]\]|[a-z_]+ = .*)$`)
	lines := strings.Split(Sample[i:], "\n")
	for n, l := range lines {
		if key.MatchString(l) {
			lines[n] = strings.TrimPrefix(l, "# ")
		}
	}
	src := Sample[:i] + strings.Join(lines, "\n")
	path := filepath.Join(dir, "master.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("the sample's examples, uncommented:\n%v", err)
	}
	if len(cfg.Reporters) != 2 || len(cfg.SecretsProviders) != 2 {
		t.Errorf("%d reporters and %d secrets providers, want 2 and 2", len(cfg.Reporters), len(cfg.SecretsProviders))
	}
}
