package config

import (
	"cmp"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/masterfiles"
)

// Parse parses and validates the TOML config in data. file names it in
// messages; a relative password_file is read from file's directory.
//
// The error lists every problem found, each an *Error, in the order of the
// file; use Errors to get them. On error the Config is nil.
func Parse(file string, data []byte) (*Config, error) {
	x, err := expand(file, data)
	if err != nil {
		return nil, err
	}
	d := &decoder{file: file, dir: filepath.Dir(file), x: x, errs: x.errs}
	cfg := d.config(d.table(nil, x.raw))
	if len(d.errs) > 0 {
		return nil, joinErrors(x.sortErrors(d.errs))
	}
	cfg.File = file
	cfg.Included = x.includedFiles()
	cfg.IncludePatterns = x.patterns
	cfg.Origins = x.origins()
	return cfg, nil
}

// decoder turns the decoded TOML into a Config, collecting every problem.
type decoder struct {
	file string
	dir  string     // where a relative password_file is
	x    *expansion // the first pass: the expanded TOML and where each value was written
	errs []*Error
	// triggers are the trigger steps' scheduler_names, checked once the
	// schedulers are known.
	triggers []triggerRef
	// upstreams are the dependent schedulers' upstream keys, checked as
	// triggers are.
	upstreams []triggerRef
	// lockNames are the [[locks]] names, by line, for the locks keys.
	lockNames map[string]int
	// builderDirs are the builders' names by their WorkerDir, so that two
	// builders never share a directory on a worker.
	builderDirs map[string]string
	// ownBuildDir are the builders that set workerbuilddir, by name.
	ownBuildDir map[string]bool
	// keyFiles are the files read for a key (password_file...), which
	// are the master's own (see MasterFiles).
	keyFiles []masterfiles.File
	// masterPaths are the transfer steps' master paths, checked once
	// every master file is known.
	masterPaths []masterPathRef
	// collapse is the global collapse_requests, the default of the
	// builders' own.
	collapse bool
}

// triggerRef is one scheduler name a trigger step names.
type triggerRef struct {
	at   keyPath
	name string
}

// line returns the line of k, or of its nearest parent with one.
func (d *decoder) line(k keyPath) int {
	_, _, l := d.x.locate(k)
	return l
}

// errorAt records a problem with key k at the line of at (k itself or a
// value inside it).
func (d *decoder) errorAt(at, k keyPath, format string, args ...any) {
	file, _, line := d.x.locate(at)
	_, key, _ := d.x.locate(k)
	d.errs = append(d.errs, &Error{File: file, Line: line, Key: key.String(), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) table(k keyPath, m map[string]any) *table {
	return &table{d: d, path: k, m: m, used: map[string]bool{}}
}

// table is one TOML table being decoded. Its getters mark keys as used and
// report wrong types; done reports the keys left over.
type table struct {
	d    *decoder
	path keyPath
	m    map[string]any
	used map[string]bool
}

func (t *table) line() int { return t.d.line(t.path) }

func (t *table) errorf(name, format string, args ...any) {
	k := t.path.key(name)
	t.d.errorAt(k, k, format, args...)
}

func (t *table) has(name string) bool {
	_, ok := t.m[name]
	return ok
}

func (t *table) get(name string) (any, bool) {
	v, ok := t.m[name]
	if ok {
		t.used[name] = true
	}
	return v, ok
}

// ignore marks keys as used without looking at them.
func (t *table) ignore(names ...string) {
	for _, name := range names {
		t.used[name] = true
	}
}

// done reports every key of t that no getter asked for.
func (t *table) done() {
	var unknown []keyPath
	for name := range t.m {
		if !t.used[name] {
			unknown = append(unknown, t.path.key(name))
		}
	}
	slices.SortFunc(unknown, func(a, b keyPath) int {
		return cmp.Or(cmp.Compare(t.d.line(a), t.d.line(b)), strings.Compare(a.String(), b.String()))
	})
	for _, k := range unknown {
		if k[len(k)-1].name == "include" {
			t.d.errorAt(k, k, "unknown key (include is a top-level key: write it before the first [table])")
			continue
		}
		t.d.errorAt(k, k, "unknown key")
	}
}

func (t *table) str(name string) (string, bool) {
	v, ok := t.get(name)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.errorf(name, "expected a string, got %s", typeName(v))
	}
	return s, ok
}

// required returns the string name, reporting it if it is missing or empty.
func (t *table) required(name string) (string, bool) {
	if !t.has(name) {
		t.errorf(name, "required")
		return "", false
	}
	s, ok := t.str(name)
	if ok && s == "" {
		t.errorf(name, "must not be empty")
		return "", false
	}
	return s, ok
}

func (t *table) integer(name string) (int64, bool) {
	v, ok := t.get(name)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.errorf(name, "expected an integer, got %s", typeName(v))
	}
	return n, ok
}

func (t *table) boolean(name string) (b, ok bool) {
	v, ok := t.get(name)
	if !ok {
		return false, false
	}
	b, ok = v.(bool)
	if !ok {
		t.errorf(name, "expected a boolean, got %s", typeName(v))
	}
	return b, ok
}

// strings returns the array of strings name, reporting each element that is
// not a string.
func (t *table) strings(name string) ([]string, bool) {
	v, ok := t.get(name)
	if !ok {
		return nil, false
	}
	a, ok := v.([]any)
	if !ok {
		t.errorf(name, "expected an array of strings, got %s", typeName(v))
		return nil, false
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			k := t.path.key(name).index(i)
			t.d.errorAt(k, k, "expected a string, got %s", typeName(e))
			continue
		}
		out = append(out, s)
	}
	return out, len(out) == len(a)
}

// duration returns the Duration name, reporting a negative one.
func (t *table) duration(name string) (Duration, bool) {
	v, ok := t.get(name)
	if !ok {
		return Duration{}, false
	}
	x, err := parseDuration(v)
	if err != nil {
		t.errorf(name, "%v", err)
		return Duration{}, false
	}
	if x < 0 {
		t.errorf(name, "must not be negative")
		return Duration{}, false
	}
	return Duration{x}, true
}

func (t *table) port(name string, p *int) {
	n, ok := t.integer(name)
	if !ok {
		return
	}
	if n < 0 || n > 65535 {
		t.errorf(name, "port %d out of range (0-65535)", n)
		return
	}
	*p = int(n)
}

// sub returns the table name.
func (t *table) sub(name string) (*table, bool) {
	v, ok := t.get(name)
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.errorf(name, "expected a table, got %s", typeName(v))
		return nil, false
	}
	return t.d.table(t.path.key(name), m), true
}

// tables returns the array of tables name: [[name]], or an array of inline
// tables.
func (t *table) tables(name string) []*table {
	v, ok := t.get(name)
	if !ok {
		return nil
	}
	k := t.path.key(name)
	var out []*table
	switch v := v.(type) {
	case []map[string]any:
		for i, m := range v {
			out = append(out, t.d.table(k.index(i), m))
		}
	case []any:
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				t.d.errorAt(k.index(i), k.index(i), "expected a table, got %s", typeName(e))
				continue
			}
			out = append(out, t.d.table(k.index(i), m))
		}
	default:
		t.errorf(name, "expected an array of tables ([[%s]]), got %s", k, typeName(v))
	}
	return out
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

func (d *decoder) config(t *table) *Config {
	c := &Config{
		BuildbotURL: DefaultBuildbotURL,
		Protocols:   Protocols{GRPC: defaultGRPC()},
		WWW: WWW{Port: DefaultWWWPort, IdleTimeout: DefaultIdleTimeout,
			Limits: ConnLimits{MaxConnectionsPerAddress: DefaultWebPerAddress}},
		DB: DB{URL: DefaultDBURL},
	}
	c.Title, _ = t.str("title")
	c.TitleURL, _ = t.str("title_url")
	if f, ok := t.str("log_format"); ok {
		if err := CheckLogFormat(f); err != nil {
			t.errorf("log_format", "%v", err)
		} else {
			c.LogFormat = f
		}
	}
	if s, ok := t.str("buildbot_url"); ok {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.errorf("buildbot_url", "%q is not an http or https URL", s)
		} else {
			if !strings.HasSuffix(s, "/") {
				s += "/"
			}
			c.BuildbotURL = s
		}
	}
	if p, ok := t.sub("protocols"); ok {
		if g, ok := p.sub("grpc"); ok {
			g.port("port", &c.Protocols.GRPC.Port)
			c.Protocols.GRPC.Interface, _ = g.str("interface")
			d.grpcLiveness(g, &c.Protocols.GRPC)
			d.connLimits(g, &c.Protocols.GRPC.Limits)
			d.grpcTLS(g, &c.Protocols.GRPC)
			g.done()
		}
		c.Protocols.PB = d.bbProtocol(p, "pb", DefaultPBPort)
		c.Protocols.Msgpack = d.bbProtocol(p, "msgpack", DefaultMsgpackPort)
		p.done()
	}
	if w, ok := t.sub("www"); ok {
		w.port("port", &c.WWW.Port)
		c.WWW.Interface, _ = w.str("interface")
		c.WWW.TrustedProxies = d.trustedProxies(w)
		c.WWW.ChangeHooks = d.changeHooks(w)
		d.authConfig(w, &c.WWW)
		d.connLimits(w, &c.WWW.Limits)
		d.idleTimeout(w, &c.WWW)
		d.webTLS(w, &c.WWW)
		d.buildbotUI(w, &c.WWW)
		if on, ok := w.boolean("metrics"); ok {
			c.WWW.NoMetrics = !on
		}
		w.done()
	}
	if db, ok := t.sub("db"); ok {
		d.db(db, &c.DB)
		db.done()
	}

	workers := map[string]int{} // line of each name
	for _, w := range t.tables("workers") {
		c.Workers = append(c.Workers, d.worker(w, workers))
	}
	changeSources := map[string]int{}
	csTables := t.tables("change_source")
	for _, cs := range csTables {
		c.ChangeSources = append(c.ChangeSources, d.changeSource(cs, changeSources))
	}
	d.distinctMirrors(csTables, c.ChangeSources)
	d.lockNames = map[string]int{}
	for _, l := range t.tables("locks") {
		c.Locks = append(c.Locks, d.lock(l, d.lockNames, workers))
	}
	// The global collapse_requests is every builder's default, so it is
	// read before them.
	c.CollapseRequests, _ = t.boolean("collapse_requests")
	d.collapse = c.CollapseRequests
	builders := map[string]int{}
	for _, b := range t.tables("builders") {
		c.Builders = append(c.Builders, d.builder(b, builders, workers))
	}
	schedulers := map[string]int{}
	for _, s := range t.tables("schedulers") {
		c.Schedulers = append(c.Schedulers, d.scheduler(s, schedulers, builders))
	}
	d.checkTriggers(c.Schedulers)
	for _, sp := range t.tables("secrets_providers") {
		c.SecretsProviders = append(c.SecretsProviders, d.secretsProvider(sp))
	}
	c.Reporters = d.reporters(t)
	d.retention(t, c)
	d.finishSteps(t, c)
	t.done()
	c.KeyFiles = d.keyFiles
	d.checkMasterPaths(c)
	d.checkPorts(c)
	d.checkWorkerProtocols(c)
	d.checkBuildbotWorkerSteps(c)
	return c
}

// unique returns name, reporting it if it is missing, empty or already in
// seen, to which it adds it. what names the kind of thing named.
func (t *table) unique(seen map[string]int, what string) string {
	name, ok := t.required("name")
	if !ok {
		return ""
	}
	file, _, line := t.d.x.locate(t.path.key("name"))
	if first, dup := seen[name]; dup {
		if firstFile := t.d.x.nameFiles[what+"\x00"+name]; firstFile != "" && firstFile != file {
			t.errorf("name", "duplicate %s name %q (first at %s:%d)", what, name, firstFile, first)
		} else {
			t.errorf("name", "duplicate %s name %q (first at line %d)", what, name, first)
		}
	} else {
		seen[name] = line
		t.d.x.nameFiles[what+"\x00"+name] = file
	}
	return name
}

// names returns the non-empty array of strings name, reporting each element
// that is not in known.
func (t *table) names(name string, known map[string]int, what string) []string {
	if !t.has(name) {
		t.errorf(name, "required")
		return nil
	}
	names, ok := t.strings(name)
	if !ok {
		return nil
	}
	if len(names) == 0 {
		t.errorf(name, "must not be empty")
		return nil
	}
	k := t.path.key(name)
	for i, n := range names {
		if _, ok := known[n]; !ok {
			t.d.errorAt(k.index(i), k, "unknown %s %q", what, n)
		}
	}
	return names
}

func (d *decoder) worker(t *table, seen map[string]int) Worker {
	w := Worker{Line: t.line(), Name: t.unique(seen, "worker")}
	if len(w.Name) > MaxWorkerName {
		t.errorf("name", "%d bytes long, more than %d: a worker could not say it in its hello", len(w.Name), MaxWorkerName)
	}
	if n, ok := t.integer("max_builds"); ok {
		if n < 0 {
			t.errorf("max_builds", "must not be negative")
		} else {
			w.MaxBuilds = int(n)
		}
	}
	w.Properties = properties(t, "properties")
	d.workerMissing(t, &w)
	d.workerProtocol(t, &w)
	password, hasPassword := t.str("password")
	file, hasFile := t.str("password_file")
	switch {
	case t.has("password") && t.has("password_file"):
		t.errorf("password_file", "set either password or password_file, not both")
	case !t.has("password") && !t.has("password_file"):
		t.errorf("password", "required (or password_file)")
	case hasPassword:
		if password == "" {
			t.errorf("password", "must not be empty")
		}
		w.Password = password
	case hasFile:
		w.PasswordFile = file
		w.Password = d.readPassword(t, file)
	}
	t.done()
	return w
}

func (d *decoder) readPassword(t *table, file string) string {
	return d.readKeyFile(t, "password_file", file)
}

// oneOf returns the required string name if it is one of allowed.
func (t *table) oneOf(name, what string, allowed ...string) (string, bool) {
	s, ok := t.required(name)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		quoted := make([]string, len(allowed))
		for i, a := range allowed {
			quoted[i] = fmt.Sprintf("%q", a)
		}
		t.errorf(name, "unknown %s %q (want %s)", what, s, strings.Join(quoted, ", "))
		return "", false
	}
	return s, true
}

func (d *decoder) builder(t *table, seen, workers map[string]int) Builder {
	b := Builder{Line: t.line(), Workdir: DefaultWorkdir}
	b.Name = t.unique(seen, "builder")
	b.WorkerBuildDir = d.workerBuildDir(t)
	if dir := b.WorkerDir(); b.Name != "" {
		other, dup := d.builderDirs[dir]
		switch {
		case dup && other == b.Name:
		case dup && (b.WorkerBuildDir != "" || d.ownBuildDir[other]):
			// A workerbuilddir is the cause: say so, where it is when it
			// is this builder's.
			key, whose := "name", fmt.Sprintf("builder %q's workerbuilddir", other)
			if b.WorkerBuildDir != "" {
				key, whose = "workerbuilddir", "this workerbuilddir"
			}
			t.errorf(key, "builders %q and %q would share the directory %q on their workers (%s): give each its own directory", other, b.Name, dir, whose)
		case dup:
			t.errorf("name", "builders %q and %q would share the directory %q on their workers (a name's blanks, \"/\" and other punctuation become \"_\", as in buildbot): rename one", other, b.Name, dir)
		}
		if d.builderDirs == nil {
			d.builderDirs, d.ownBuildDir = map[string]string{}, map[string]bool{}
		}
		if !dup {
			d.builderDirs[dir] = b.Name
		}
		if b.WorkerBuildDir != "" {
			d.ownBuildDir[b.Name] = true
		}
	}
	b.WorkerNames = t.names("worker_names", workers, "worker")
	b.Description, _ = t.str("description")
	b.Tags, _ = t.strings("tags")
	b.Locks = d.lockAccesses(t, "locks")
	b.CollapseRequests = d.collapse
	if v, ok := t.boolean("collapse_requests"); ok {
		b.CollapseRequests = v
	}
	b.Properties = properties(t, "properties")
	if t.has("workdir") {
		if s, ok := t.required("workdir"); ok {
			b.Workdir = s
		}
	}
	for _, st := range t.tables("steps") {
		b.Steps = append(b.Steps, d.step(st, b.Workdir))
	}
	d.builderEnv(t, &b)
	b.DefaultProperties = properties(t, "default_properties")
	t.done()
	return b
}

// Keys only some step types take.
var (
	shellKeys = slices.Concat([]string{"command"}, shellOptionKeys, warningKeys)
	gitKeys   = []string{"repourl", "mode", "branch", "method", "shallow", "submodules", "ssh_private_key_file", "codebase"}
	// triggerKeys are the keys of a trigger step.
	triggerKeys = []string{"scheduler_names", "wait_for_finish", "set_properties", "update_source_stamp", "always_use_latest", "source_stamps"}
)

func (d *decoder) step(t *table, workdir string) Step {
	s := Step{
		Line:           t.line(),
		Workdir:        workdir,
		Timeout:        Duration{DefaultStepTimeout},
		FlunkOnFailure: true,
	}
	typ, known := t.oneOf("type", "step type", slices.Concat([]string{"shell", "git", "trigger"}, WorkerStepTypes, MasterStepTypes)...)
	s.Type = typ
	s.Name = typ
	if t.has("name") {
		if name, ok := t.required("name"); ok {
			s.Name = name
		}
	}
	s.Description, _ = t.str("description")
	if t.has("workdir") {
		if w, ok := t.required("workdir"); ok {
			s.Workdir = w
		}
	}
	if env, ok := t.sub("env"); ok {
		s.Env, s.EnvLists = readEnv(env)
	}
	if x, ok := t.duration("timeout"); ok {
		s.Timeout = x
	}
	s.MaxTime, _ = t.duration("max_time")
	s.HaltOnFailure = typ == "git"
	if b, ok := t.boolean("halt_on_failure"); ok {
		s.HaltOnFailure = b
	}
	if b, ok := t.boolean("flunk_on_failure"); ok {
		s.FlunkOnFailure = b
	}
	s.WarnOnFailure, _ = t.boolean("warn_on_failure")
	s.AlwaysRun, _ = t.boolean("always_run")
	s.Locks = d.lockAccesses(t, "locks")
	d.stepConditions(t, &s)

	if !known {
		// Unknown or missing type: which keys apply is unknown.
		t.ignore(shellKeys...)
		t.ignore(gitKeys...)
		t.ignore(triggerKeys...)
		t.ignore(allWorkerStepKeys()...)
		t.ignore(allMasterStepKeys()...)
		t.done()
		return s
	}
	var other []string
	switch typ {
	case "shell":
		other = append(slices.Clone(gitKeys), triggerKeys...)
		if v, ok := t.get("command"); !ok {
			t.errorf("command", "required for a shell step")
		} else if cmd, err := parseCommand(v); err != nil {
			t.errorf("command", "%v", err)
		} else {
			s.Command = cmd
		}
		d.shellOptions(t, &s)
		d.warningOptions(t, &s)
	case "git":
		other = append(slices.Clone(shellKeys), triggerKeys...)
		s.RepoURL, _ = t.required("repourl")
		s.Mode = "incremental"
		if t.has("mode") {
			if mode, ok := t.oneOf("mode", "git mode", "incremental", "full"); ok {
				s.Mode = mode
			}
		}
		s.Branch, _ = t.str("branch")
		if s.Mode == "full" {
			s.Method = "clobber"
		}
		if t.has("method") {
			if m, ok := t.oneOf("method", "git method", "clobber", "fresh", "clean", "copy"); ok {
				if s.Mode != "full" {
					t.errorf("method", "only for mode = \"full\"")
				}
				s.Method = m
			}
		}
		if v, ok := t.get("shallow"); ok {
			switch v := v.(type) {
			case bool:
				if v {
					s.Shallow = 1
				}
			case int64:
				if v < 0 {
					t.errorf("shallow", "must not be negative")
				} else {
					s.Shallow = int(v)
				}
			default:
				t.errorf("shallow", "expected a boolean or an integer depth, got %s", typeName(v))
			}
		}
		s.Submodules, _ = t.boolean("submodules")
		s.SSHPrivateKeyFile, _ = t.str("ssh_private_key_file")
		s.Codebase, _ = t.str("codebase")
	case "trigger":
		other = append(slices.Clone(shellKeys), gitKeys...)
		d.triggerStep(t, &s)
	case "mkdir", "rmdir", "remove_file", "file_upload", "directory_upload", "file_download", "string_download",
		"shell_sequence", "json_string_download", "json_properties_download", "multiple_file_upload":
		other = d.workerStep(t, &s)
	case "set_property", "set_property_from_command", "master_shell_command", "log_message":
		other = d.masterStep(t, &s)
	}
	for _, name := range other {
		if t.has(name) {
			t.ignore(name)
			t.errorf(name, "not allowed in a %s step", typ)
		}
	}
	d.checkInterpolations(t, &s)
	t.done()
	return s
}
