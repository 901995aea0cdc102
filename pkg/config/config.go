package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// Defaults, as buildbot's where buildbot has one.
const (
	DefaultBuildbotURL  = "http://localhost:8010/"
	DefaultGRPCPort     = 9989
	DefaultWWWPort      = 8010
	DefaultDBURL        = "bbolt:state.db"
	DefaultPollInterval = 10 * time.Minute
	DefaultWorkdir      = "build"
	DefaultStepTimeout  = 1200 * time.Second
)

// Config is a parsed and validated master.toml. It is a plain value: every
// default is filled in, and nothing in it refers back to the file.
type Config struct {
	File string // the path it was loaded from
	// Included are the files its include keys read (see include.go), in
	// the order they were merged: the master's own files too.
	Included []string
	// IncludePatterns are the include keys' patterns with a wildcard, as
	// absolute paths: a file a build wrote where one matches would be
	// read at the next reconfig, so transfers may write none (see
	// MasterFiles).
	IncludePatterns []string
	// Origins are the included files values came from, by key path
	// ("www", "workers[3]"), for messages after loading (see fileOf);
	// nil when nothing was included.
	Origins     map[string]string
	Title       string // title
	TitleURL    string // title_url
	BuildbotURL string // buildbot_url: the public URL of the web UI; default DefaultBuildbotURL; always ends with "/"
	Protocols   Protocols
	WWW         WWW
	DB          DB
	// LogFormat is log_format: how master.log is written, LogFormatText
	// (slog's key=value lines) or LogFormatJSON (one JSON object a line,
	// for log shippers); "" (the default) means LogFormatText.
	// gbb-master's --log-format overrides it.
	LogFormat string

	Workers       []Worker       // [[workers]]
	ChangeSources []ChangeSource // [[change_source]]
	Schedulers    []Scheduler    // [[schedulers]]
	Builders      []Builder      // [[builders]]
	Locks         []Lock         // [[locks]]
	// SecretsProviders are the [[secrets_providers]], asked in order for
	// the values of %(secret:NAME)s; none means a secret fails the step.
	SecretsProviders []SecretsProvider
	// Reporters are the [[reporters]]: who hears of builds (forges'
	// commit statuses, mail, webhooks).
	Reporters []Reporter

	// LogMaxSize is log_max_size, as buildbot's logMaxSize: the bytes of a
	// step's log kept from its start (bytes, or a string such as "10MiB");
	// zero (the default) means no limit. Past it the output is dropped but
	// for its last LogMaxTailSize bytes (log_max_tail_size; zero, the
	// default, keeps none), written at the end after a note saying what was
	// dropped.
	LogMaxSize, LogMaxTailSize int64
	// CollapseRequests is the top-level collapse_requests, as buildbot's
	// c['collapseRequests']: the default of every builder's own
	// collapse_requests (Builder.CollapseRequests holds the value each
	// builder ends up with). Default false, where buildbot's is true.
	CollapseRequests bool
	Janitor          Janitor // [janitor]
	// FinishSteps is finish_steps_on_restart and finish_steps_wait.
	FinishSteps FinishSteps
	// KeyFiles are the files the config read at load time for a key
	// (password_file, secret_file, htpasswd, ssh_private_key_file): the
	// master's own, out of reach of transfers (see MasterFiles).
	KeyFiles []masterfiles.File
}

// Protocols is [protocols]: how workers reach the master.
type Protocols struct {
	GRPC    GRPC       // [protocols.grpc]
	PB      BBProtocol // [protocols.pb]: buildbot-workers over Perspective Broker; off unless the table is there
	Msgpack BBProtocol // [protocols.msgpack]: buildbot-workers over msgpack_experimental_v7; off unless the table is there
}

// GRPC is [protocols.grpc], the port workers connect to.
type GRPC struct {
	Port      int    // port; default DefaultGRPCPort (9989); 0 picks a free port (for tests)
	Interface string // interface: the address to listen on; "" (the default) means all addresses
	// KeepaliveInterval is keepalive_interval: how often the master pings
	// each worker; default DefaultKeepaliveInterval (10s), at least 1s.
	// KeepaliveTimeout is keepalive_timeout: how long a ping may go
	// unanswered; default DefaultKeepaliveTimeout (10s), at least 1s. A
	// worker killed, or cut off without a word, is found gone within their
	// sum (its builds end RETRY); so is a master by its workers. A new
	// connection must say hello within their sum too, and a worker already
	// connected has KeepaliveTimeout to answer when another says hello
	// under its name (see the liveness section of the README).
	KeepaliveInterval, KeepaliveTimeout time.Duration
	// Limits are max_connections and max_connections_per_address.
	Limits ConnLimits
	// TLS is tls, tls_cert_file, tls_key_file, client_ca_file and
	// tls_names (see tls.go).
	TLS GRPCTLS
}

// Addr returns the address to listen on, as net.Listen takes it.
func (g GRPC) Addr() string { return net.JoinHostPort(g.Interface, strconv.Itoa(g.Port)) }

// WWW is [www], the web server.
type WWW struct {
	Port      int    // port; default DefaultWWWPort (8010); 0 picks a free port (for tests)
	Interface string // interface: the address to listen on; "" (the default) means all addresses
	// ChangeHooks are the [www.change_hook.DIALECT] tables by dialect: the
	// webhooks POST /change_hook/DIALECT accepts. Nil or a missing dialect
	// means that dialect is disabled (404).
	ChangeHooks map[string]ChangeHook
	Auth        Auth  // [www.auth]; none means no login: everyone may do everything
	Authz       Authz // [www.authz]
	// TrustedProxies is trusted_proxies: the reverse proxies (IP addresses
	// or CIDR prefixes) in front of the web server, whose X-Forwarded-For
	// names the client, for the brake on password guessing and the log.
	// Empty (the default) means each connection's peer is the client.
	// A reconfig applies it from the next request on.
	TrustedProxies []netip.Prefix
	// Limits are max_connections and max_connections_per_address.
	Limits ConnLimits
	// IdleTimeout is idle_timeout: how long a keep-alive connection may
	// wait for its next request before the master closes it; default
	// DefaultIdleTimeout (60s), at least 1s. Live streams (/sse/, /ws)
	// and requests in progress are not idle.
	IdleTimeout time.Duration
	// TLS is tls_cert_file and tls_key_file (webtls.go); none means plain
	// HTTP.
	TLS WebTLS
	// BuildbotUI is buildbot_ui_dir and avatar_methods (see bbui.go).
	BuildbotUI BuildbotUI
	// NoMetrics is metrics = false: /metrics answers 404. Zero (metrics =
	// true, the default) serves the Prometheus metrics there.
	NoMetrics bool
}

// Addr returns the address to listen on, as net.Listen takes it.
func (w WWW) Addr() string { return net.JoinHostPort(w.Interface, strconv.Itoa(w.Port)) }

// DB is [db], where the master keeps its state.
type DB struct {
	// URL is url: "bbolt:PATH" (PATH relative to the master's basedir;
	// the default, DefaultDBURL, is "bbolt:state.db") or a PostgreSQL URL,
	// "postgres://…" or "postgresql://…", which several masters may share.
	URL string
	// HeartbeatInterval is heartbeat_interval: how often the master
	// records in the store that it is alive, and how often a master that
	// is not the leader tries to become it; zero means
	// DefaultHeartbeatInterval.
	HeartbeatInterval Duration
	// MasterTimeout is master_timeout: how long a master sharing the store
	// may stay silent before the leader presumes it dead (its unfinished
	// requests run again, its builds end RETRY); zero means
	// DefaultMasterTimeout.
	MasterTimeout Duration
}

// The defaults of [db]'s heartbeat_interval and master_timeout.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultMasterTimeout     = 60 * time.Second
)

// Heartbeat returns heartbeat_interval, its default when unset.
func (d DB) Heartbeat() time.Duration {
	if d.HeartbeatInterval.Duration > 0 {
		return d.HeartbeatInterval.Duration
	}
	return DefaultHeartbeatInterval
}

// Timeout returns master_timeout, its default when unset.
func (d DB) Timeout() time.Duration {
	if d.MasterTimeout.Duration > 0 {
		return d.MasterTimeout.Duration
	}
	return DefaultMasterTimeout
}

// IsBolt reports whether the store is a bbolt file (one master holds it).
func (d DB) IsBolt() bool {
	return !IsPostgresURL(d.URL)
}

// IsPostgresURL reports whether u names a PostgreSQL database
// ("postgres://…" or "postgresql://…").
func IsPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// Redacted returns the URL with its password, if any, replaced by "xxxxx":
// what logs, pages and errors may show.
func (d DB) Redacted() string {
	return RedactDBURL(d.URL)
}

// RedactDBURL returns u with the password of its user info, and the
// values of its secret parameters (SecretDBParams), replaced by "xxxxx". A URL that does not parse
// is replaced whole, as it may hold a password where the parser did not
// find it.
func RedactDBURL(u string) string {
	if !IsPostgresURL(u) {
		return u
	}
	p, err := url.Parse(u)
	if err != nil {
		return "postgresql://(a URL that does not parse)"
	}
	q := p.Query()
	for _, k := range SecretDBParams {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			p.RawQuery = q.Encode()
		}
	}
	return p.Redacted()
}

// SecretDBParams are the PostgreSQL URL parameters that hold a secret:
// the password, and the passphrase of the client's TLS key.
var SecretDBParams = []string{"password", "sslpassword"}

// BoltPath returns the absolute path of the bbolt file of a master whose
// base directory is basedir, or "" when the store is on PostgreSQL.
func (d DB) BoltPath(basedir string) string {
	if !d.IsBolt() {
		return ""
	}
	p := strings.TrimPrefix(d.URL, "bbolt:")
	if !filepath.IsAbs(p) {
		p = filepath.Join(basedir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// MaxWorkerName is the longest worker name, in bytes: the master refuses
// a hello with a longer one before any other work (pkg/protocol's
// MaxWorkerName, the same number). buildbot's are at most 50 characters.
const MaxWorkerName = 128

// Worker is one [[workers]] table: a worker allowed to connect.
type Worker struct {
	Name         string // name; required, unique
	Password     string // password, or the content of PasswordFile
	PasswordFile string // password_file: read at load time (trailing newline trimmed) into Password; exactly one of password and password_file is required; relative to the config file's directory
	MaxBuilds    int    // max_builds: builds run at once on this worker; zero means no limit
	// Properties is properties: build properties (any TOML values) of
	// every build on this worker, with the source "Worker", as buildbot's
	// worker properties; they override the scheduler's.
	Properties map[string]any
	// NotifyOnMissing is notify_on_missing: the admins' mail addresses,
	// told by the mail reporters when the worker stays away for
	// MissingTimeout, as buildbot's.
	NotifyOnMissing []string
	// MissingTimeout is missing_timeout: how long the worker may stay
	// away before NotifyOnMissing hears of it; zero means
	// DefaultMissingTimeout (1h, as buildbot's 3600 s).
	MissingTimeout time.Duration
	// Protocol is protocol: the one protocol the worker may log in with,
	// ProtocolGBB ("gbb", a gbb-worker), ProtocolPB ("pb") or
	// ProtocolMsgpack ("msgpack") for a buildbot-worker; "" (the default)
	// means any. Naming it lets checkconfig see what a builder's workers
	// can run.
	Protocol string
	Line     int // line of the [[workers]] table, for messages
}

// Builder is one [[builders]] table.
type Builder struct {
	Name        string   // name; required, unique
	WorkerNames []string // worker_names; required, non-empty, each names a worker
	Description string   // description
	Tags        []string // tags
	Workdir     string   // workdir: the default workdir of its steps, relative to the build directory; default DefaultWorkdir ("build")
	Steps       []Step   // [[builders.steps]]
	// Locks is locks: the locks a build takes before it starts and keeps
	// until it ends.
	Locks []LockAccess
	// CollapseRequests is collapse_requests: when a builder has several
	// pending requests for the same sources, only the newest is built and
	// the others end SKIPPED, as buildbot's collapseRequests. As buildbot's
	// getCollapseRequestsFn, the builder's own key wins, then the global
	// collapse_requests (Config.CollapseRequests), then the default: false
	// in gbb, where buildbot's is true (see the README's differences).
	CollapseRequests bool
	// Properties is properties: build properties (any TOML values) of
	// every build of this builder, with the source "Builder"; as
	// buildbot's BuilderConfig.properties, they override the changes' and
	// the scheduler's (forced ones too), and the worker's override them.
	Properties map[string]any
	// DefaultProperties is default_properties, as buildbot's
	// defaultProperties: each is set (source "Builder") only when nothing
	// else set it.
	DefaultProperties map[string]any
	// Env is env, as buildbot's BuilderConfig.env: variables put under
	// the env of each shell and set_property_from_command step (the
	// step's own win); already merged into those steps' Env. A value
	// given as an array of strings is in EnvLists instead.
	Env map[string]string
	// EnvLists are the variables of env given as arrays of strings: the
	// worker joins each with ":" (buildbot's os.pathsep join); already
	// merged into the steps' EnvLists as Env is.
	EnvLists map[string][]string
	// WorkerBuildDir is workerbuilddir: the builder's directory on its
	// workers, relative to their base directory; "" (the default) means
	// the name made safe (see WorkerDir).
	WorkerBuildDir string
	Line           int // line of the [[builders]] table
}

// WorkerDir is the builder's directory on its workers: its workerbuilddir,
// or else its name with the
// characters buildbot's safeTranslate replaces (blanks, "/" and other
// punctuation a shell or a path would read) as "_", as buildbot's default
// builddir and workerbuilddir.
func (b Builder) WorkerDir() string {
	if b.WorkerBuildDir != "" {
		return b.WorkerBuildDir
	}
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune("\t !#$%&'()*+,./:;<=>?@[\\]^{|}~", r) {
			return '_'
		}
		return r
	}, b.Name)
}

// Step is one [[builders.steps]] table.
type Step struct {
	Type              string              // type: "shell", "git" or "trigger"; required
	Name              string              // name; default: the type, as buildbot
	Description       string              // description
	Command           Command             // command: shell only, required there
	Workdir           string              // workdir; default: the builder's Workdir
	Env               map[string]string   // env: added to the worker's environment, each ${NAME} expanded from the worker's (the master's for master_shell) environment
	EnvLists          map[string][]string // env values given as arrays of strings: joined with ":" where the command runs, then expanded as Env's
	Timeout           Duration            // timeout: time without output before the command is killed (git: each git command); default DefaultStepTimeout (1200s); zero means none
	MaxTime           Duration            // max_time: time before the command is killed (git: the whole step); zero (the default) means none
	HaltOnFailure     bool                // halt_on_failure; default false for shell, true for git (as buildbot)
	FlunkOnFailure    bool                // flunk_on_failure; default true
	WarnOnFailure     bool                // warn_on_failure; default false
	AlwaysRun         bool                // always_run; default false
	Locks             []LockAccess        // locks: taken before the step runs, released after it
	RepoURL           string              // repourl: git only, required there
	Mode              string              // mode: git only, "incremental" (the default) or "full"
	Branch            string              // branch: git only; "" means the build's branch property, else the remote's default branch
	Method            string              // method: git full mode only, "clobber" (the default there), "fresh", "clean" or "copy"; "" in incremental mode
	Shallow           int                 // shallow: git only, the depth of a shallow clone (true means 1); zero (the default) means the whole history
	Submodules        bool                // submodules: git only, init and update the submodules recursively; default false
	SSHPrivateKeyFile string              // ssh_private_key_file: git only, a path on the worker to the private key for ssh URLs; "" (the default) means the worker's ssh agent
	Codebase          string              // codebase: git only, whose source stamp it checks out; "" (the default) is the codebase ""
	// Trigger steps (type = "trigger"), as buildbot's Trigger.
	SchedulerNames    []string       // scheduler_names: required, triggerable schedulers
	WaitForFinish     bool           // wait_for_finish: wait for the triggered builds, and take their worst result
	SetProperties     map[string]any // set_properties: properties of the triggered builds
	UpdateSourceStamp bool           // update_source_stamp: default true; build this build's got_revision
	// Trigger steps: which source stamps the triggered builds build.
	AlwaysUseLatest bool                 // always_use_latest: the latest of each codebase; default false
	SourceStamps    []TriggerSourceStamp // source_stamps: these; nil (the default) means this build's
	// Shell options (type = "shell"), as buildbot's ShellCommand.
	DropStdout      bool              // want_stdout = false: the worker drops the command's stdout; false (want_stdout's default, true) sends it
	DropStderr      bool              // want_stderr = false: the worker drops the command's stderr; false (want_stderr's default, true) sends it
	InterruptSignal string            // interrupt_signal: the signal sent on interrupt and timeout, "KILL", "TERM", "INT"... (no "SIG"); "" (the default) means "TERM" when sigterm_time is set, else "KILL"
	SigtermTime     Duration          // sigterm_time: time a signal other than KILL has before KILL follows; zero (the default) means KILL at once, or 5s after an interrupt_signal other than KILL
	Logfiles        map[string]string // logfiles: log name -> file relative to the workdir, tailed into a log of that name while the command runs
	DecodeRC        map[int]string    // decode_rc: exit code -> result name ("success", "warnings", "failure", ...); nil means 0 is success and any other code failure
	// Worker file steps and transfers (see transfersteps.go).
	Dir        string // dir: mkdir and rmdir, relative to the builder's directory on the worker (BASEDIR/<builder>/)
	Path       string // path: remove_file, relative to the builder's directory on the worker
	WorkerSrc  string // workersrc: file_upload and directory_upload, relative to the workdir
	WorkerDest string // workerdest: file_download and string_download, relative to the workdir
	MasterSrc  string // mastersrc: file_download, relative to the master's basedir, which it may not leave
	MasterDest string // masterdest: file_upload and directory_upload, relative to the master's basedir, which it may not leave
	Content    string // s: string_download's content
	MaxSize    int64  // max_size: transfers, in bytes; zero (the default) means no limit
	FileMode   int    // mode: file_upload, file_download and string_download: the written file's permissions (e.g. 0o755); zero (the default) leaves the default (0666 less the umask)
	BlockSize  int    // blocksize: transfers' chunk size in bytes, at most (and by default) 64 KiB
	// shell_sequence and multiple_file_upload (see steps_more.go).
	Commands   []ShellArg // commands: shell_sequence, required, non-empty
	WorkerSrcs []string   // workersrcs: multiple_file_upload, required, relative to the workdir (glob patterns with glob)
	Glob       bool       // glob: multiple_file_upload, workersrcs are patterns expanded on the worker; default false
	// Warnings and conditions (see steps_master.go), on every step.
	QuietWarnings   bool                   // warn_on_warnings = false: a WARNINGS step leaves the build's result alone; false (warn_on_warnings's default, true) makes the build WARNINGS
	FlunkOnWarnings bool                   // flunk_on_warnings: a WARNINGS step makes the build FAILURE; default false
	DoStepIf        *interpolate.Condition // do_step_if: when false, the step is SKIPPED; nil (the default) means run
	HideStepIf      *interpolate.Condition // hide_step_if: evaluated when the step has ended (%(kw:results)s is its result's name); true hides it; nil (the default) means shown
	// Shell steps counting warnings, as buildbot's WarningCountingShellCommand.
	WarningPattern string        // warning_pattern: a regular expression (RE2) matched against each stdout and stderr line; "" (the default) counts nothing, unless suppress or max_warn_count is set (then DefaultWarningPattern)
	Suppress       []Suppression // suppress: warning lines not counted
	MaxWarnCount   *int          // max_warn_count: more warnings than this make the step FAILURE; nil (the default) means no limit
	// Master steps (see steps_master.go).
	Property string // property: set_property and set_property_from_command, the property's name
	Value    any    // value: set_property, any TOML value (its strings rendered); s: json_string_download
	Strip    bool   // strip: set_property_from_command, strip whitespace around the output; default true
	Regex    string // regex: set_property_from_command, a regular expression (RE2) with a capture group: the property is the first group of its first match in the output; "" (the default) means the whole output
	Message  string // message: log_message, the log's text
	LogName  string // log_name: log_message, the log's name; default DefaultLogMessageName ("message")
	Line     int    // line of the [[builders.steps]] table
}

// Command is a step's command: an argv list, run directly, or a string, run
// by /bin/sh -c, as in buildbot. At most one of the fields is set.
type Command struct {
	Argv   []string // set when the TOML value is an array
	Script string   // set when it is a string
}

// IsZero reports whether c is no command at all.
func (c Command) IsZero() bool { return len(c.Argv) == 0 && c.Script == "" }

// String returns c for display: the script, or argv joined with spaces.
func (c Command) String() string {
	if c.Argv != nil {
		return strings.Join(c.Argv, " ")
	}
	return c.Script
}

// UnmarshalTOML sets c from a TOML string or array of strings.
func (c *Command) UnmarshalTOML(v any) error {
	cmd, err := parseCommand(v)
	if err != nil {
		return err
	}
	*c = cmd
	return nil
}

func parseCommand(v any) (Command, error) {
	switch v := v.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return Command{}, fmt.Errorf("must not be empty")
		}
		return Command{Script: v}, nil
	case []any:
		if len(v) == 0 {
			return Command{}, fmt.Errorf("must not be empty")
		}
		argv := make([]string, len(v))
		for i, a := range v {
			s, ok := a.(string)
			if !ok {
				return Command{}, fmt.Errorf("expected an array of strings, got %s at index %d", typeName(a), i)
			}
			argv[i] = s
		}
		return Command{Argv: argv}, nil
	}
	return Command{}, fmt.Errorf("expected a string or an array of strings, got %s", typeName(v))
}

// Duration is a time.Duration read from TOML as a string for
// time.ParseDuration ("300s", "5m", "1h30m") or an integer number of
// seconds.
type Duration struct{ time.Duration }

// UnmarshalTOML sets d from a TOML string or integer.
func (d *Duration) UnmarshalTOML(v any) error {
	x, err := parseDuration(v)
	if err != nil {
		return err
	}
	d.Duration = x
	return nil
}

func parseDuration(v any) (time.Duration, error) {
	switch v := v.(type) {
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf(`invalid duration %q (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`, v)
		}
		return d, nil
	case int64:
		if v > math.MaxInt64/int64(time.Second) || v < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("%d seconds is out of range", v)
		}
		return time.Duration(v) * time.Second, nil
	}
	return 0, fmt.Errorf("expected a duration (a string such as \"5m\" or an integer number of seconds), got %s", typeName(v))
}

// Load reads the config file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data)
}
