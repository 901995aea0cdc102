package bbimport

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
)

// stepsKey stands for the key of a step list in a rendered one, replaced
// once it is known whether the list goes into a builder
// ("builders.steps") or a factory ("factories.NAME.steps").
const stepsKey = "\x00STEPS\x00"

// builders writes the builders; builders with the same step list (two or
// more) share a [factories.NAME].
func builders(w *writer, bs []map[string]any) {
	type rendered struct {
		text  string
		count int
	}
	lists := make([]rendered, len(bs))
	for i, b := range bs {
		sw := &writer{render: true, basedir: w.basedir}
		for _, st := range list(b["steps"]) {
			step(sw, st)
		}
		lists[i] = rendered{sw.b.String(), sw.count}
	}
	matrixAt := map[int]matrixBuilder{}
	inMatrix := map[int]bool{}
	// First, builders next to each other with the same property names
	// whose steps differ (a factory made per combination in a loop) but
	// only by those values: one matrix with %(kw:KEY)s in its steps is
	// shorter than a near-identical factory each.
	shapeOf := func(b map[string]any) string {
		props, _ := b["properties"].(map[string]any)
		return strings.Join(slices.Sorted(maps.Keys(props)), "\x00")
	}
	for start := 0; start < len(bs); {
		end := start + 1
		for end < len(bs) && shapeOf(bs[end]) == shapeOf(bs[start]) && lists[end].text != "" {
			end++
		}
		texts := map[string]bool{}
		for i := start; i < end; i++ {
			texts[lists[i].text] = true
		}
		if end-start >= 2 && len(texts) >= 2 && lists[start].text != "" && shapeOf(bs[start]) != "" {
			group := bs[start:end]
			own := make([]string, end-start)
			for i := start; i < end; i++ {
				own[i-start] = lists[i].text
			}
			if tmpl, axes, text, ok := matrixOf(group, own); ok {
				matrixAt[start] = matrixBuilder{tmpl: tmpl, axes: axes, steps: text, count: lists[start].count}
				for i := start; i < end; i++ {
					inMatrix[i] = true
				}
			}
		}
		start = end
	}
	byText := map[string][]int{}
	var order []string
	for i := range bs {
		if lists[i].text == "" || inMatrix[i] {
			continue
		}
		if _, seen := byText[lists[i].text]; !seen {
			order = append(order, lists[i].text)
		}
		byText[lists[i].text] = append(byText[lists[i].text], i)
	}
	factoryOf := map[string]string{}
	usedNames := map[string]bool{}
	for _, text := range order {
		idx := byText[text]
		if len(idx) < 2 {
			continue
		}
		var names []string
		for _, i := range idx {
			names = append(names, bs[i]["name"].(string))
		}
		name := factoryName(names, usedNames)
		factoryOf[text] = name
		w.printf("\n[factories.%s]\n", key(name))
		w.note("", fmt.Sprintf("the steps of %s", strings.Join(names, ", ")))
		w.b.WriteString(strings.ReplaceAll(text, stepsKey, "factories."+key(name)+".steps"))
		w.count += lists[idx[0]].count
	}
	// Builders that share a factory and differ only in the values of
	// some properties are one builder with a matrix, written where the
	// first of them was.
	for _, text := range order {
		idx := byText[text]
		if len(idx) < 2 {
			continue
		}
		group := make([]map[string]any, len(idx))
		for j, i := range idx {
			group[j] = bs[i]
		}
		// A shared step list that says %(kw:KEY)s would take the matrix's
		// values, which buildbot's steps never had.
		if strings.Contains(text, "%(kw:") {
			continue
		}
		// Written where the first was: only builders next to each other
		// keep buildbot's order.
		if idx[len(idx)-1]-idx[0] != len(idx)-1 {
			continue
		}
		if tmpl, axes, _, ok := matrixOf(group, nil); ok {
			matrixAt[idx[0]] = matrixBuilder{tmpl: tmpl, axes: axes, factory: factoryOf[text]}
			for _, i := range idx {
				inMatrix[i] = true
			}
		}
	}
	// Builders with steps of their own that differ only in the values of
	// some properties, in their steps too (a loop that writes the
	// platform into a command), are one builder with a matrix whose steps
	// say %(kw:KEY)s. Candidates have the same property names.
	var shapes []string
	byShape := map[string][]int{}
	for i, b := range bs {
		if inMatrix[i] || len(byText[lists[i].text]) > 1 || lists[i].text == "" {
			continue
		}
		props, _ := b["properties"].(map[string]any)
		shape := strings.Join(slices.Sorted(maps.Keys(props)), "\x00")
		if _, seen := byShape[shape]; !seen {
			shapes = append(shapes, shape)
		}
		byShape[shape] = append(byShape[shape], i)
	}
	for _, shape := range shapes {
		idx := byShape[shape]
		if len(idx) < 2 {
			continue
		}
		group := make([]map[string]any, len(idx))
		texts := make([]string, len(idx))
		for j, i := range idx {
			group[j], texts[j] = bs[i], lists[i].text
		}
		if idx[len(idx)-1]-idx[0] != len(idx)-1 {
			continue
		}
		if tmpl, axes, text, ok := matrixOf(group, texts); ok {
			matrixAt[idx[0]] = matrixBuilder{tmpl: tmpl, axes: axes, steps: text, count: lists[idx[0]].count}
			for _, i := range idx {
				inMatrix[i] = true
			}
		}
	}
	for i, b := range bs {
		name, shared := factoryOf[lists[i].text]
		if m, ok := matrixAt[i]; ok {
			builder(w, m.tmpl, m.factory, m.axes)
			w.b.WriteString(strings.ReplaceAll(m.steps, stepsKey, "builders.steps"))
			w.count += m.count
			continue
		}
		if inMatrix[i] {
			continue
		}
		builder(w, b, name, nil)
		if shared {
			continue
		}
		w.b.WriteString(strings.ReplaceAll(lists[i].text, stepsKey, "builders.steps"))
		w.count += lists[i].count
	}
}

// factoryName names the factory of builders: their names' common prefix,
// trimmed of separators, or "shared".
func factoryName(names []string, used map[string]bool) string {
	prefix := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	prefix = strings.TrimRight(prefix, "-_. /:")
	if prefix == "" || !bareKey.MatchString(prefix) {
		prefix = "shared"
	}
	name := prefix
	for n := 2; used[name]; n++ {
		name = fmt.Sprintf("%s%d", prefix, n)
	}
	used[name] = true
	return name
}

// matrixBuilder is a builder with a matrix: its keys, with %(kw:KEY)s
// for the values of the axes.
type matrixBuilder struct {
	tmpl    map[string]any
	axes    []axis
	factory string // its [factories.NAME], or ""
	steps   string // its own steps, rendered, or ""
	count   int    // untranslatable items in steps
}

// builder writes a builder's keys; factory, when not "", names its
// [factories.NAME]; axes, when set, are its [builders.matrix].
func builder(w *writer, b map[string]any, factory string, axes []axis) {
	name := b["name"].(string)
	w.printf("\n[[builders]]\n")
	w.kv("", "name", name)
	w.conv("", "workernames", "worker_names", b["workernames"])
	if s, ok := b["description"].(string); ok && s != "" {
		w.kv("", "description", s)
	}
	if t := strs(b["tags"]); len(t) > 0 {
		w.kv("", "tags", t)
	}
	if s, ok := b["workerbuilddir"].(string); ok && axes == nil && s != (config.Builder{Name: name}).WorkerDir() {
		w.kv("", "workerbuilddir", s)
	}
	if s, ok := b["builddir"].(string); ok {
		w.skip("", "builddir", fmt.Sprintf("%q: gbb keeps a builder's files on the master by its name", s))
	}
	if s, ok := b["factory_workdir"].(string); ok && s != config.DefaultWorkdir {
		w.kv("", "workdir", s)
	}
	switch v := b["collapseRequests"].(type) {
	case nil:
	case bool:
		w.kv("", "collapse_requests", v)
	default:
		w.skip("", "collapseRequests", describeRaw(v))
	}
	for _, k := range []string{"nextWorker", "nextBuild", "canStartBuild"} {
		if v, ok := b[k]; ok && v != nil {
			w.skip("", k, describeRaw(v)+": gbb places builds as buildbot's default does")
		}
	}
	if m, ok := b["env"].(map[string]any); ok && len(m) > 0 {
		env(w, "", m)
	}
	for _, pair := range [][2]string{{"properties", "properties"}, {"defaultProperties", "default_properties"}} {
		if m, ok := b[pair[0]].(map[string]any); ok && len(m) > 0 {
			w.conv("", pair[0], pair[1], m)
		}
	}
	if f, _ := b["factory"].(string); f != "" && f != "BuildFactory" {
		w.note("", fmt.Sprintf("buildbot's %s: its steps are imported as they were loaded", f))
	}
	if factory != "" {
		w.kv("", "factory", factory)
	}
	if axes != nil {
		w.printf("  [builders.matrix]\n")
		for _, a := range axes {
			w.kv("  ", a.name, a.values)
		}
	}
	locks(w, "", "builders.locks", b["locks"])
}

// locks writes the lock accesses of a builder or a step.
func locks(w *writer, indent, header string, v any) {
	ls, ok := v.([]any)
	if !ok {
		if v != nil {
			w.skip(indent, "locks", describeRaw(v))
		}
		return
	}
	for _, l := range ls {
		m, _ := l.(map[string]any)
		if m["$gbb"] != "lock" {
			w.skip(indent, "locks", describeRaw(l))
			continue
		}
		access := "exclusive"
		if m["mode"] == "counting" {
			access = "counting"
		}
		w.printf("%s  [[%s]]\n", indent, header)
		w.kv(indent+"  ", "name", m["name"].(string))
		w.kv(indent+"  ", "access", access)
	}
}

// stepTypes maps buildbot's step classes to gbb's step types.
var stepTypes = map[string]string{
	"ShellCommand":                "shell",
	"Compile":                     "shell",
	"Test":                        "shell",
	"Configure":                   "shell",
	"WarningCountingShellCommand": "shell",
	"TreeSize":                    "",
	"Git":                         "git",
	"Trigger":                     "trigger",
	"SetProperty":                 "set_property",
	"SetPropertyFromCommand":      "set_property_from_command",
	"MasterShellCommand":          "master_shell_command",
	"MakeDirectory":               "mkdir",
	"RemoveDirectory":             "rmdir",
	"FileUpload":                  "file_upload",
	"DirectoryUpload":             "directory_upload",
	"FileDownload":                "file_download",
	"StringDownload":              "string_download",
	"ShellSequence":               "shell_sequence",
	"JSONStringDownload":          "json_string_download",
	"JSONPropertiesDownload":      "json_properties_download",
	"MultipleFileUpload":          "multiple_file_upload",
}

// StepSupported reports whether import-buildbot translates a step of
// buildbot's class cls (the others become comments).
func StepSupported(cls string) bool { return stepTypes[cls] != "" }

// step writes one step of a list, under stepsKey.
func step(w *writer, st map[string]any) {
	cls := st["class"].(string)
	p := newParams(st["params"])
	typ := stepTypes[cls]
	ind := "  "
	name, _ := p.m["name"].(string)
	if name == "" {
		name, _ = st["default_name"].(string)
	}
	if name == "" {
		name = cls
	}
	// A step whose required key has no TOML form is left out whole.
	for _, req := range []string{"command", "repourl", "schedulerNames"} {
		if v, ok := p.m[req]; ok && typ != "" {
			if _, err := renderedValue(v); err != nil {
				w.printf("\n")
				w.skip(ind, fmt.Sprintf("step %q (%s)", name, cls), req+": "+err.Error())
				return
			}
		}
	}
	// gbb's master paths are relative to its basedir, which they may not
	// leave; buildbot's are relative to its own, or absolute.
	for _, k := range []string{"masterdest", "mastersrc"} {
		v, ok := p.m[k]
		if !ok || v == nil {
			continue
		}
		if s, why := masterPath(w.basedir, v); why != "" {
			w.printf("\n")
			w.skip(ind, fmt.Sprintf("step %q (%s)", name, cls), k+": "+why)
			return
		} else if s != nil {
			p.m[k] = s
		}
	}
	// gbb's worker paths stay inside the directory they are relative to;
	// buildbot's may be absolute. Written, such a step would make the
	// whole config fail checkconfig: it is left out, counted.
	for _, k := range []string{"dir", "path", "workersrc", "workerdest"} {
		wp, isStr := p.m[k].(string)
		if !isStr || !slices.Contains([]string{"mkdir", "rmdir", "remove_file", "file_upload", "directory_upload", "file_download", "string_download", "json_string_download", "json_properties_download"}, typ) {
			continue
		}
		if !filepath.IsLocal(wp) || (typ == "rmdir" && filepath.Clean(wp) == ".") {
			w.printf("\n")
			w.skip(ind, fmt.Sprintf("step %q (%s)", name, cls), fmt.Sprintf("%s %q is absolute, leaves its directory or is the builder's directory itself, which gbb's %s refuses", k, wp, typ))
			return
		}
	}
	if typ == "shell_sequence" {
		// buildbot runs no ShellArg whose command is empty (its
		// shouldRunTheCommand); gbb refuses one: they are left out.
		if l, isList := p.m["commands"].([]any); isList && len(l) > 0 {
			kept := slices.DeleteFunc(slices.Clone(l), func(a any) bool {
				m, _ := a.(map[string]any)
				switch c := m["command"].(type) {
				case string:
					return c == ""
				case []any:
					return len(c) == 0
				}
				return false
			})
			if n := len(l) - len(kept); n > 0 {
				if len(kept) == 0 {
					w.printf("\n")
					w.skip(ind, fmt.Sprintf("step %q (%s)", name, cls), "every ShellArg's command is empty: buildbot runs none of them, and gbb takes no step without a command")
					return
				}
				w.note(ind, fmt.Sprintf("step %q: %d ShellArg(s) with an empty command left out, as buildbot runs none", name, n))
				p.m["commands"] = kept
			}
		}
		if why := shellArgsProblem(p.m["commands"]); why != "" {
			w.printf("\n")
			w.skip(ind, fmt.Sprintf("step %q (%s)", name, cls), "commands: "+why)
			return
		}
	}
	if typ == "" {
		w.printf("\n")
		w.skip(ind, fmt.Sprintf("step %q (%s.%s)", name, st["module"], cls), "gbb has no such step")
		return
	}
	// A step run only when a Python function says so must not become one
	// that always runs: it is left out whole.
	if v, ok := p.m["doStepIf"]; ok && v != nil {
		if _, isBool := v.(bool); !isBool {
			w.printf("\n")
			w.skip(ind, fmt.Sprintf("step %q (%s)", name, cls), "doStepIf: "+describeRaw(v)+
				": buildbot runs it only when that function says so; left out whole: write it back with a do_step_if expression")
			return
		}
	}
	w.printf("\n  [[%s]]\n", stepsKey)
	w.kv(ind, "type", typ)
	if v, ok := p.get("name"); ok {
		w.conv(ind, "name", "name", v)
	} else if n, _ := st["default_name"].(string); n != "" && n != typ {
		// buildbot names a step after its class ("compile", "test").
		w.kv(ind, "name", n)
	}
	if v, ok := p.get("description"); ok {
		if l, isList := v.([]any); isList {
			v = strings.Join(strs(l), " ")
		}
		w.conv(ind, "description", "description", v)
	}
	if v, ok := p.get("env"); ok {
		env(w, ind, v)
	}
	p.rename(w, ind, "workdir", "workdir")
	results(w, ind, typ, st["flags"], p)
	for _, k := range []string{"timeout", "maxTime"} {
		if v, ok := p.m[k]; ok {
			p.ignore(k)
			gk := map[string]string{"timeout": "timeout", "maxTime": "max_time"}[k]
			if v == nil {
				if k == "timeout" {
					w.kv(ind, gk, "0s")
				}
			} else if s, ok := seconds(v); ok {
				w.kv(ind, gk, s)
			} else {
				w.skip(ind, k, describeRaw(v))
			}
		}
	}
	for _, k := range []string{"doStepIf", "hideStepIf"} {
		if v, ok := p.get(k); ok {
			gk := map[string]string{"doStepIf": "do_step_if", "hideStepIf": "hide_step_if"}[k]
			if b, isBool := v.(bool); isBool {
				w.kv(ind, gk, b)
			} else {
				w.skip(ind, k, describeRaw(v)+": write it as a do_step_if/hide_step_if expression")
			}
		}
	}
	switch typ {
	case "shell", "set_property_from_command", "master_shell_command":
		if v, ok := p.get("command"); ok {
			w.conv(ind, "command", "command", v)
		}
	}
	switch typ {
	case "shell":
		if v, ok := p.get("want_stdout"); ok {
			w.conv(ind, "want_stdout", "want_stdout", v)
		}
		if v, ok := p.get("want_stderr"); ok {
			w.conv(ind, "want_stderr", "want_stderr", v)
		}
		if v, ok := p.get("logfiles"); ok {
			logfiles(w, ind, v)
		}
		p.rename(w, ind, "interruptSignal", "interrupt_signal",
			"warningPattern", "warning_pattern", "maxWarnCount", "max_warn_count")
		if v, ok := p.get("sigtermTime"); ok {
			if s, ok := seconds(v); ok {
				w.kv(ind, "sigterm_time", s)
			}
		}
		if v, ok := p.get("decodeRC"); ok {
			decodeRC(w, ind, v)
		}
		p.ignore("descriptionDone", "descriptionSuffix")
	case "git":
		p.rename(w, ind, "repourl", "repourl", "mode", "mode", "method", "method",
			"branch", "branch", "submodules", "submodules", "codebase", "codebase")
		if v, ok := p.get("shallow"); ok {
			w.conv(ind, "shallow", "shallow", v)
		}
		p.ignore("clobberOnFailure")
	case "trigger":
		p.rename(w, ind, "schedulerNames", "scheduler_names", "waitForFinish", "wait_for_finish",
			"set_properties", "set_properties", "updateSourceStamp", "update_source_stamp",
			"alwaysUseLatest", "always_use_latest")
		p.ignore("sourceStamps")
	case "set_property":
		p.rename(w, ind, "property", "property", "value", "value")
	case "set_property_from_command":
		p.rename(w, ind, "property", "property", "strip", "strip")
		if v, ok := p.get("extract_fn"); ok {
			w.skip(ind, "extract_fn", describeRaw(v)+": gbb takes a regex")
		}
	case "mkdir", "rmdir":
		p.rename(w, ind, "dir", "dir")
	case "file_upload", "directory_upload", "file_download":
		p.rename(w, ind, "workersrc", "workersrc", "masterdest", "masterdest",
			"mastersrc", "mastersrc", "workerdest", "workerdest", "maxsize", "max_size",
			"blocksize", "blocksize")
	case "string_download":
		p.rename(w, ind, "s", "s", "workerdest", "workerdest")
	case "json_string_download":
		p.rename(w, ind, "o", "s", "workerdest", "workerdest")
	case "json_properties_download":
		p.rename(w, ind, "workerdest", "workerdest")
	case "multiple_file_upload":
		p.rename(w, ind, "workersrcs", "workersrcs", "masterdest", "masterdest", "glob", "glob",
			"maxsize", "max_size", "blocksize", "blocksize")
	}
	if v, ok := p.m["mode"]; ok && typ != "git" {
		if n, isNum := num(v); isNum {
			w.kv(ind, "mode", octal(n))
			p.ignore("mode")
		}
	}
	p.ignore("locks", "sourceStamps", "commands")
	p.rest(w, ind, cls+" option")
	// Sub-tables last: the keys after them would be theirs.
	if v, ok := p.m["locks"]; ok && v != nil {
		locks(w, "  ", stepsKey+".locks", v)
	}
	if typ == "shell_sequence" {
		for _, a := range p.m["commands"].([]any) {
			m := a.(map[string]any)
			w.printf("%s[[%s.commands]]\n", ind+"  ", stepsKey)
			w.conv(ind+"  ", "command", "command", m["command"])
			if s, ok := m["logname"].(string); ok {
				w.kv(ind+"  ", "logname", s)
			}
			for _, pair := range [][2]string{{"haltOnFailure", "halt_on_failure"}, {"flunkOnFailure", "flunk_on_failure"}, {"warnOnFailure", "warn_on_failure"}} {
				if v, ok := m[pair[0]]; ok {
					w.conv(ind+"  ", pair[0], pair[1], v)
				}
			}
			for _, k := range []string{"warnOnWarnings", "flunkOnWarnings"} {
				if v, ok := m[k]; ok && v != nil {
					w.skip(ind+"  ", "ShellArg "+k, "not in gbb's shell_sequence commands")
				}
			}
		}
	}
	if v, ok := p.m["sourceStamps"]; ok && v != nil && typ == "trigger" {
		for _, ss := range v.([]any) {
			w.printf("%s[[%s.source_stamps]]\n", ind+"  ", stepsKey)
			m, _ := ss.(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(m)) {
				w.conv(ind+"  ", "source stamp "+k, k, m[k])
			}
		}
	}
}

// resultKeys are buildbot's result settings of a step, their gbb keys
// and gbb's defaults (halt_on_failure's is true for git only).
var resultKeys = []struct {
	bb, gbb string
	def     bool
}{
	{"haltOnFailure", "halt_on_failure", false},
	{"flunkOnFailure", "flunk_on_failure", true},
	{"warnOnFailure", "warn_on_failure", false},
	{"warnOnWarnings", "warn_on_warnings", true},
	{"flunkOnWarnings", "flunk_on_warnings", false},
	{"alwaysRun", "always_run", false},
}

// results writes a step's result settings that differ from gbb's
// defaults: flags are the values buildbot's step instance had (its
// class's defaults, such as Compile's haltOnFailure, and its arguments);
// without them (a step that could not be made), its arguments.
func results(w *writer, ind, typ string, flags any, p *params) {
	f, ok := flags.(map[string]any)
	if !ok || f["$gbb"] != nil {
		if ok {
			w.skip(ind, "haltOnFailure and the other result settings", describe(f)+": only those given are written")
		}
		for _, k := range resultKeys {
			if v, ok := p.get(k.bb); ok {
				w.conv(ind, k.bb, k.gbb, v)
			}
		}
		return
	}
	for _, k := range resultKeys {
		p.ignore(k.bb)
		def := k.def
		if k.bb == "haltOnFailure" {
			def = typ == "git"
		}
		switch v := f[k.bb].(type) {
		case bool:
			if v != def {
				w.kv(ind, k.gbb, v)
			}
		default:
			w.skip(ind, k.bb, describeRaw(v))
		}
	}
}

// masterPath reads a transfer step's masterdest or mastersrc: an absolute
// path inside buildbot's basedir is made relative to it (the returned
// value, else nil: as it was); one outside it has no gbb form (why).
func masterPath(basedir string, v any) (any, string) {
	var s string
	interp := false
	switch v := v.(type) {
	case string:
		s = v
	case map[string]any:
		if v["$gbb"] != "interp" {
			return nil, ""
		}
		s, _ = v["s"].(string)
		interp = true
	default:
		return nil, ""
	}
	if !filepath.IsAbs(s) {
		return nil, ""
	}
	rel, err := filepath.Rel(basedir, s)
	if basedir == "" || err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Sprintf("%q is absolute: gbb's master paths are relative to its basedir, which they may not leave; copy what it needs under the new basedir and write the path relative to it", s)
	}
	if interp {
		return map[string]any{"$gbb": "interp", "s": rel}, ""
	}
	return rel, ""
}

// decodeRC writes buildbot's decodeRC {code: result} as gbb's decode_rc
// {code: name}.
func decodeRC(w *writer, ind string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		w.skip(ind, "decodeRC", describeRaw(v))
		return
	}
	names := []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}
	out := map[string]any{}
	for code, r := range m {
		n, ok := num(r)
		if !ok || n < 0 || int(n) >= len(names) {
			w.skip(ind, "decodeRC", fmt.Sprintf("result %v", r))
			return
		}
		out[code] = names[n]
	}
	w.kv(ind, "decode_rc", out)
}

// shellArgsProblem says why a ShellSequence's commands have no TOML form,
// or "".
func shellArgsProblem(v any) string {
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		return describeRaw(v)
	}
	for _, a := range l {
		m, _ := a.(map[string]any)
		if m["class"] != "ShellArg" {
			return describeRaw(a)
		}
		if _, err := renderedValue(m["command"]); err != nil {
			return err.Error()
		}
		for _, k := range []string{"haltOnFailure", "flunkOnFailure", "warnOnFailure"} {
			if v, ok := m[k]; ok {
				if _, isBool := v.(bool); !isBool {
					return k + ": " + describeRaw(v)
				}
			}
		}
	}
	return ""
}

// env writes an env table: a list value is joined with ":", as buildbot
// joins it with the worker's path separator (":" on the POSIX workers
// gbb runs on).
func env(w *writer, ind string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		w.skip(ind, "env", describeRaw(v))
		return
	}
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e := m[k]
		if l, isList := e.([]any); isList {
			var parts []string
			for _, x := range l {
				y, err := valueOf(x, w.render)
				s, isStr := y.(string)
				if err != nil || !isStr {
					w.skip(ind, "env "+k, describeRaw(x))
					parts = nil
					break
				}
				parts = append(parts, s)
			}
			if parts != nil {
				out[k] = strings.Join(parts, ":")
			}
			continue
		}
		y, err := valueOf(e, w.render)
		if s, isStr := y.(string); err == nil && isStr {
			out[k] = s
		} else {
			w.skip(ind, "env "+k, describeRaw(e))
		}
	}
	if len(out) > 0 {
		w.kv(ind, "env", out)
	}
}

// logfiles writes a shell step's logfiles: buildbot's {"name": file} or
// {"name": {"filename": file, "follow": ...}}.
func logfiles(w *writer, ind string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		w.skip(ind, "logfiles", describeRaw(v))
		return
	}
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e := m[k]
		if d, isDict := e.(map[string]any); isDict && d["$gbb"] == nil {
			e = d["filename"]
		}
		y, err := valueOf(e, w.render)
		if s, isStr := y.(string); err == nil && isStr {
			out[k] = s
		} else {
			w.skip(ind, "logfiles "+k, describeRaw(e))
		}
	}
	if len(out) > 0 {
		w.kv(ind, "logfiles", out)
	}
}
