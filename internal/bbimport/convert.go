package bbimport

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Result is a converted config.
type Result struct {
	TOML string
	// Untranslatable counts what was written as a "# import-buildbot:"
	// comment because gbb cannot express it.
	Untranslatable int
}

// writer accumulates TOML text and the untranslatable count.
type writer struct {
	b     strings.Builder
	count int
	// render is set while writing keys gbb renders (see renderedValue).
	render bool
	// basedir is buildbot's basedir (master.cfg's directory).
	basedir string
	// drop, when set, says why what is being written must be left out
	// whole.
	drop string
}

func (w *writer) printf(format string, args ...any) { fmt.Fprintf(&w.b, format, args...) }

// skip writes what could not be translated, and why, as a comment.
func (w *writer) skip(indent, what, why string) {
	w.count++
	why = strings.ReplaceAll(why, "\n", " ")
	w.printf("%s# import-buildbot: %s: %s\n", indent, what, why)
}

// note writes a comment that is no loss: its marker is not skip's, so
// that the count is the number of "# import-buildbot:" lines.
func (w *writer) note(indent, text string) {
	text = strings.ReplaceAll(text, "\n", " ")
	w.printf("%s# import-buildbot note: %s\n", indent, text)
}

// kv writes key = v, v a TOML value.
func (w *writer) kv(indent, k string, v any) {
	w.printf("%s%s = %s\n", indent, key(k), format(v))
}

// conv writes key = the translation of raw, or the reason it has none.
func (w *writer) conv(indent, what, k string, raw any) {
	v, err := valueOf(raw, w.render)
	if err != nil {
		w.skip(indent, what, err.Error())
		return
	}
	w.kv(indent, k, v)
}

// params are the arguments a buildbot object was configured with; take
// marks one used, rest reports those left.
type params struct {
	m    map[string]any
	used map[string]bool
}

func newParams(m any) *params {
	p := &params{used: map[string]bool{}}
	p.m, _ = m.(map[string]any)
	return p
}

// get returns a parameter that is set (not None).
func (p *params) get(name string) (any, bool) {
	v, ok := p.m[name]
	p.used[name] = true
	return v, ok && v != nil
}

func (p *params) str(name string) (string, bool) {
	v, ok := p.get(name)
	s, isStr := v.(string)
	return s, ok && isStr
}

// rename writes each parameter that is set under its gbb key: pairs of
// buildbot name, gbb key.
func (p *params) rename(w *writer, indent string, pairs ...string) {
	for i := 0; i < len(pairs); i += 2 {
		if v, ok := p.get(pairs[i]); ok {
			w.conv(indent, pairs[i], pairs[i+1], v)
		}
	}
}

func (p *params) ignore(names ...string) {
	for _, n := range names {
		p.used[n] = true
	}
}

// rest writes a comment for every parameter not taken.
func (p *params) rest(w *writer, indent, what string) {
	for _, k := range slices.Sorted(maps.Keys(p.m)) {
		if !p.used[k] && p.m[k] != nil {
			w.skip(indent, what+" "+k, "no such option in gbb")
		}
	}
}

func num(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	return int64(f), err == nil
}

func seconds(v any) (string, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return "", false
	}
	return n.String() + "s", true
}

func strs(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = []string{v}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// Convert writes the TOML of a config Load returned.
func Convert(cfg map[string]any) *Result {
	w := &writer{}
	w.basedir, _ = cfg["basedir"].(string)
	w.note("", "made by gbb-master import-buildbot from buildbot's loaded master.cfg")
	if s, ok := cfg["title"].(string); ok {
		w.kv("", "title", s)
	}
	if s, ok := cfg["titleURL"].(string); ok {
		w.kv("", "title_url", s)
	}
	if s, ok := cfg["buildbotURL"].(string); ok {
		w.kv("", "buildbot_url", s)
	}
	switch v := cfg["collapseRequests"].(type) {
	case nil:
		// buildbot's default is to collapse, gbb's is not.
		w.kv("", "collapse_requests", true)
	case bool:
		w.kv("", "collapse_requests", v)
	default:
		w.skip("", "collapseRequests", "a Python callable: gbb collapses requests or not")
	}
	if n, ok := num(cfg["logMaxSize"]); ok {
		w.kv("", "log_max_size", n)
	}
	if n, ok := num(cfg["logMaxTailSize"]); ok {
		w.kv("", "log_max_tail_size", n)
	}
	if props, ok := cfg["properties"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(props)) {
			w.skip("", "c['properties'] "+k, "gbb has no global properties: set it in the builders' properties")
		}
	}
	if db, ok := cfg["db"].(map[string]any); ok {
		if u, ok := db["db_url"].(string); ok {
			w.note("", fmt.Sprintf("db_url %q not imported: gbb keeps its state in [db] url (default bbolt:state.db)", u))
		}
	}
	if cfg["codebaseGenerator"] == true {
		w.note("", "c['codebaseGenerator'] was asked for the codebase of each poller's repository")
	}
	var used []int64
	if m, ok := cfg["www"].(map[string]any); ok {
		if port, _, why := listenAddr(m["port"]); why == "" {
			used = append(used, port)
		}
	}
	protocols(w, cfg["protocols"], used)
	www(w, cfg)
	for _, wk := range list(cfg["workers"]) {
		worker(w, cfg, wk)
	}
	for _, l := range list(cfg["locks"]) {
		lock(w, l)
	}
	for _, cs := range list(cfg["change_source"]) {
		changeSource(w, cs)
	}
	builders(w, list(cfg["builders"]))
	schedulers(w, list(cfg["schedulers"]))
	for _, s := range list(cfg["services"]) {
		service(w, s)
	}
	for _, s := range list(cfg["secretsProviders"]) {
		w.printf("\n")
		if dir := secretDir(s, cfg); dir != "" {
			w.printf("[[secrets_providers]]\n")
			w.kv("", "type", "file")
			w.kv("", "dirname", dir)
			if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o066 != 0 {
				w.skip("", "secrets directory", fmt.Sprintf("%s has mode %04o, which buildbot accepts but gbb refuses (group and others may not read or write it): chmod 700 %s", dir, st.Mode().Perm(), dir))
			}
			continue
		}
		w.skip("", fmt.Sprintf("secrets provider %v", s["class"]), "not translated: write a [[secrets_providers]] table for it")
	}
	w.printf("\n")
	w.note("", fmt.Sprintf("%d untranslatable item(s), each on a line that starts with the marker \"# import-buildbot\" and a colon", w.count))
	return &Result{TOML: w.b.String(), Untranslatable: w.count}
}

// list reads an array of objects of the loader's JSON; anything else is
// none.
func list(v any) []map[string]any {
	var out []map[string]any
	l, _ := v.([]any)
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// listenAddr reads a port as buildbot takes it: a number or a twisted
// strports string ("tcp:9989", "tcp:port=9989:interface=127.0.0.1").
func listenAddr(v any) (port int64, iface string, why string) {
	if n, ok := num(v); ok {
		if n <= 0 || n > 65535 {
			return 0, "", fmt.Sprintf("port %d", n)
		}
		return n, "", ""
	}
	s, ok := v.(string)
	if !ok {
		return 0, "", describeRaw(v)
	}
	port, iface, ok = strport(s)
	if !ok {
		return 0, "", fmt.Sprintf("%q: gbb listens on a TCP port and an interface; this strports string has no such form: set port and interface by hand", s)
	}
	return port, iface, ""
}

// protocols writes buildbot's worker ports: pb (buildbot-workers) stays
// [protocols.pb] on buildbot's port, so the workers need no change, and
// [protocols.grpc], gbb-workers' port, gets a port of its own.
func protocols(w *writer, v any, used []int64) {
	p, _ := v.(map[string]any)
	// A port that is not translated leaves gbb's own worker port
	// ([protocols.grpc], default 9989) listening on every address unless
	// it is kept on loopback.
	loopback, grpcDone := false, false
	defer func() {
		if loopback && !grpcDone {
			w.printf("\n[protocols.grpc]\n")
			w.kv("", "interface", "127.0.0.1")
		}
	}()
	for _, name := range slices.Sorted(maps.Keys(p)) {
		opts, _ := p[name].(map[string]any)
		gname := map[string]string{"pb": "pb", "msgpack_experimental_v7": "msgpack"}[name]
		if gname == "" {
			w.skip("", "protocols "+name, "gbb has no such worker protocol")
			continue
		}
		port, iface, why := listenAddr(opts["port"])
		if why != "" {
			w.printf("\n")
			w.skip("", "protocols "+name+" port", why+"; until then gbb's worker port listens on 127.0.0.1 only")
			loopback = true
			continue
		}
		used = append(used, port)
		w.printf("\n[protocols.%s]\n", gname)
		w.note("", fmt.Sprintf("buildbot's %s port: buildbot-workers keep connecting to it as they did", name))
		w.kv("", "port", port)
		if iface != "" {
			w.kv("", "interface", iface)
		}
		for k := range opts {
			if k != "port" {
				w.skip("", "protocols "+name+" "+k, "no such option in gbb")
			}
		}
		if gname != "pb" {
			continue
		}
		// gbb's own worker port, on the same interface.
		g := int64(9999)
		for slices.Contains(used, g) {
			g++
		}
		grpcDone = true
		w.printf("\n[protocols.grpc]\n")
		w.note("", "gbb-workers' port. To move a worker from buildbot-worker to gbb-worker: "+
			"gbb-worker create-worker with this port and the fingerprint gbb-master create-master printed (tls = \"auto\": the master's own CA); "+
			"once no buildbot-worker is left, remove [protocols.pb] and give this table buildbot's port")
		w.kv("", "port", g)
		if iface != "" {
			w.kv("", "interface", iface)
		}
		w.kv("", "tls", "auto")
	}
}

func www(w *writer, cfg map[string]any) {
	m, _ := cfg["www"].(map[string]any)
	hooks, _ := m["change_hook_dialects"].(map[string]any)
	w.printf("\n[www]\n")
	if m["port"] == nil {
		// buildbot runs no web server then; gbb always serves its UI, so
		// it stays on loopback until someone opens it on purpose.
		w.skip("", "www port", "buildbot ran no web server (c['www'] has no port); gbb always serves its web UI, "+
			"so it listens on 127.0.0.1 only: to open it, set port and interface (\"\" is every address) here, with a login in [www.auth]")
		w.kv("", "interface", "127.0.0.1")
	} else {
		if port, iface, why := listenAddr(m["port"]); why != "" {
			w.skip("", "www port", why+"; until then gbb's web UI listens on 127.0.0.1 only")
			w.kv("", "interface", "127.0.0.1")
		} else {
			w.kv("", "port", port)
			if iface != "" {
				w.kv("", "interface", iface)
			}
		}
	}
	for _, dialect := range slices.Sorted(maps.Keys(hooks)) {
		if !slices.Contains([]string{"github", "gitlab", "gitea", "base"}, dialect) {
			w.skip("", "change hook "+dialect, "gbb has no such dialect")
			continue
		}
		w.printf("\n[www.change_hook.%s]\n", key(dialect))
		p := newParams(hooks[dialect])
		if s, ok := p.get("secret"); ok {
			w.fileKey(cfg, "change hook secret", "secret", s)
		}
		if s, ok := p.get("codebase"); ok {
			w.conv("", "change hook codebase", "codebase", s)
		} else if cfg["codebaseGenerator"] == true {
			w.skip("", "codebase", "c['codebaseGenerator'] gives each change of this hook its codebase; gbb's hook gives one: set codebase if its changes are of one repository")
		}
		p.ignore("strict")
		p.rest(w, "", "change hook "+dialect)
	}
	a, _ := m["auth"].(map[string]any)
	z, _ := m["authz"].(map[string]any)
	webAuth(w, a, z)
}

func worker(w *writer, cfg, wk map[string]any) {
	w.printf("\n[[workers]]\n")
	w.kv("", "name", wk["name"].(string))
	p := newParams(wk["params"])
	p.ignore("name")
	if wk["class"] != "Worker" {
		w.skip("", fmt.Sprintf("worker %v", wk["name"]), fmt.Sprintf("buildbot's %v: gbb's workers connect by themselves; it is imported as one", wk["class"]))
	}
	if pw, ok := p.get("password"); ok {
		w.fileKey(cfg, "password", "password", pw)
	} else {
		w.skip("", "password", "none in master.cfg: set one")
	}
	if n, ok := p.get("max_builds"); ok {
		w.conv("", "max_builds", "max_builds", n)
	}
	if props, ok := p.get("properties"); ok {
		if m, _ := props.(map[string]any); len(m) > 0 {
			w.conv("", "worker properties", "properties", props)
		}
	}
	if v, ok := p.get("notify_on_missing"); ok {
		if s := strs(v); len(s) > 0 {
			w.kv("", "notify_on_missing", s)
		}
	}
	if v, ok := p.get("missing_timeout"); ok {
		if s, ok := seconds(v); ok {
			w.kv("", "missing_timeout", s)
		}
	}
	if wk["class"] != "Worker" {
		p = newParams(nil)
	}
	p.rest(w, "", "worker option")
}

func lock(w *writer, l map[string]any) {
	w.printf("\n[[locks]]\n")
	w.kv("", "name", l["name"].(string))
	w.kv("", "type", l["type"].(string))
	if n, ok := num(l["max_count"]); ok {
		w.kv("", "max_count", n)
	}
	if m, ok := l["max_count_for_worker"]; ok {
		w.conv("", "max_count_for_worker", "max_count_for_worker", m)
	}
}

func changeSource(w *writer, cs map[string]any) {
	w.printf("\n")
	if cs["class"] != "GitPoller" {
		why := "gbb has no such change source"
		if cs["class"] == "PBChangeSource" {
			why = "use the base change hook ([www.change_hook.base]) and gbb-master sendchange"
		}
		w.skip("", fmt.Sprintf("change source %v", cs["class"]), why)
		return
	}
	p := newParams(cs["params"])
	w.printf("[[change_source]]\n")
	w.kv("", "type", "git_poller")
	if name, ok := p.str("name"); ok {
		w.kv("", "name", name)
	}
	w.conv("", "repourl", "repourl", p.m["repourl"])
	p.ignore("repourl")
	if b, ok := p.get("branch"); ok {
		if s, ok := b.(string); ok {
			w.kv("", "branches", []string{s})
		} else {
			w.skip("", "branch", describeRaw(b))
		}
	}
	if b, ok := p.get("branches"); ok {
		switch b := b.(type) {
		case bool:
			w.kv("", "branches", b)
		case []any:
			w.conv("", "branches", "branches", b)
		default:
			w.skip("", "branches", describeRaw(b)+": write branch_regex")
		}
	}
	if v, ok := p.get("pollInterval"); ok {
		if s, ok := seconds(v); ok {
			w.kv("", "poll_interval", s)
		}
	}
	if v, ok := p.get("pollinterval"); ok && fmt.Sprint(v) != "-2" {
		if s, ok := seconds(v); ok {
			w.kv("", "poll_interval", s)
		}
	}
	if cb, ok := cs["codebase"]; ok {
		if s, isStr := cb.(string); isStr {
			if s != "" {
				w.kv("", "codebase", s)
			}
		} else {
			w.skip("", "codebase", describeRaw(cb))
		}
	}
	p.rename(w, "", "pollAtLaunch", "poll_at_launch", "only_tags", "only_tags",
		"buildPushesWithNoCommits", "build_pushes_with_no_commits", "category", "category",
		"project", "project", "workdir", "workdir")
	p.ignore("gitbin", "usetimestamps", "encoding", "pollRandomDelayMin", "pollRandomDelayMax")
	p.rest(w, "", "GitPoller option")
}

func describeRaw(v any) string {
	if m, ok := v.(map[string]any); ok {
		return describe(m)
	}
	_, err := value(v)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%v", v)
}

// strport reads a twisted strports string of a TCP port: "tcp:9989",
// "9989", "tcp:port=9989:interface=127.0.0.1", "tcp:9989:interface=::1"
// (a colon in the interface escaped as "\\:" too), with a backlog
// (ignored), and tcp6 with an IPv6 interface. Any other option, or
// another endpoint type (ssl, unix), is no such port.
func strport(s string) (int64, string, bool) {
	// Split on unescaped colons.
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == ':':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	parts = append(parts, cur.String())
	v6 := false
	if len(parts) > 1 {
		switch parts[0] {
		case "tcp":
		case "tcp6":
			v6 = true
		default:
			return 0, "", false
		}
		parts = parts[1:]
	}
	var port, iface string
	for i, p := range parts {
		k, v, hasEq := strings.Cut(p, "=")
		switch {
		case !hasEq && i == 0:
			port = p
		case hasEq && k == "port" && port == "":
			port = v
		case hasEq && k == "interface" && iface == "":
			iface = v
		case hasEq && k == "backlog":
			// The listen queue's length: gbb keeps the system's.
			if _, err := strconv.ParseUint(v, 10, 31); err != nil {
				return 0, "", false
			}
		default:
			return 0, "", false
		}
	}
	if v6 {
		// tcp6 without an interface is every IPv6 address, which gbb
		// cannot say apart from every address.
		if ip := net.ParseIP(iface); ip == nil || ip.To4() != nil {
			return 0, "", false
		}
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil || n <= 0 || n > 65535 {
		return 0, "", false
	}
	return n, iface, true
}

// secretDir is the directory of a SecretInAFile provider without
// suffixes (gbb's "file" provider), absolute, or "".
func secretDir(s map[string]any, cfg map[string]any) string {
	if s["class"] != "SecretInAFile" {
		return ""
	}
	p := newParams(s["params"])
	dir, ok := p.str("dirname")
	if !ok {
		return ""
	}
	if v, ok := p.get("suffixes"); ok {
		if l, _ := v.([]any); len(l) > 0 {
			return ""
		}
	}
	if !filepath.IsAbs(dir) {
		base, _ := cfg["basedir"].(string)
		dir = filepath.Join(base, dir)
	}
	return dir
}

var secretRef = regexp.MustCompile(`^%\(secret:([^:)]+)\)s$`)

// fileKey writes a key that gbb takes as a literal or from a file (a
// worker's password, a hook's secret): a plain string as it is, a secret
// of a SecretInAFile provider as its file (fileKey_file), anything else as
// a comment.
func (w *writer) fileKey(cfg map[string]any, what, k string, raw any) {
	v, err := value(raw)
	if err != nil {
		w.skip("", what, err.Error())
		return
	}
	s, ok := v.(string)
	if !ok {
		w.skip("", what, describeRaw(raw))
		return
	}
	if _, isInterp := raw.(map[string]any); !isInterp {
		w.kv("", k, s)
		return
	}
	if m := secretRef.FindStringSubmatch(s); m != nil {
		for _, sp := range list(cfg["secretsProviders"]) {
			if dir := secretDir(sp, cfg); dir != "" {
				w.kv("", k+"_file", filepath.Join(dir, m[1]))
				return
			}
		}
	}
	w.skip("", what, fmt.Sprintf("%s: gbb reads it as it is or from %s_file; no SecretInAFile provider holds it", s, k))
}
