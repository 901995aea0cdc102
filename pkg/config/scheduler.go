package config

import (
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
)

// SchedulerTypes are the values of a scheduler's type.
var SchedulerTypes = []string{"single_branch", "any_branch", "force", "periodic", "nightly", "triggerable", "dependent", "nightly_triggerable"}

// ForceParamTypes are the values of a force parameter's type.
var ForceParamTypes = []string{"string", "text", "int", "bool", "choice", "fixed", "username", "multiple_choice", "worker_choice"}

// Scheduler is one [[schedulers]] table. Which keys a type takes:
//
//   - every type: type, name, builder_names, properties;
//   - single_branch, any_branch: the change filter keys (branch, branch_re,
//     project, repository, category, codebase, files, only_important,
//     skip_ci) and
//     tree_stable_timer; single_branch needs branch or another filter key;
//   - periodic: period, and the change filter keys with only_if_changed;
//   - nightly: minute, hour, day_of_month, month, day_of_week, or cron
//     instead, and the change filter keys with only_if_changed;
//   - force: reason, label, button_name and [[schedulers.params]];
//   - triggerable: nothing more;
//   - dependent: upstream (see dependent.go);
//   - nightly_triggerable: the nightly keys (see dependent.go).
//
// A change passes the filter when it matches every filter key set. Its
// files decide whether it is important (buildbot's fileIsImportant): with
// files set, a change is important when one of its files matches one of the
// patterns (path.Match syntax on the whole path, where a "**" element also
// matches any number of directories); a change with no files then is not.
// Unimportant changes that pass the filter go into the next buildset with
// the important ones but start none on their own, unless only_important
// drops them.
type Scheduler struct {
	Type         string         // type: one of SchedulerTypes; required
	Name         string         // name; required, unique among schedulers
	BuilderNames []string       // builder_names; required, non-empty, each names a builder
	Properties   map[string]any // properties: a table set on every buildset (source "Scheduler"); nil when none
	Priority     int            // priority: of its build requests; higher builds first; default 0
	// Codebases: every type; the codebases its buildsets carry one source
	// stamp each of (see Codebase); a change of another codebase is
	// ignored, as buildbot's. nil (the default) means buildbot's {"": {}},
	// except that a change scheduler then takes the changes of every
	// codebase, one source stamp per codebase changed, as gbb did before.
	Codebases map[string]Codebase

	// Change filter: single_branch, any_branch, periodic, nightly.
	Branch        string   // branch: changes on this branch only; single_branch requires it unless another filter key is set
	BranchRe      string   // branch_re: changes whose branch matches this regexp (Go syntax, unanchored as buildbot's re.search)
	Project       string   // project: changes of this project only
	Repository    string   // repository: changes of this repository only
	Category      string   // category: changes of this category only
	Codebase      string   // codebase: changes of this codebase only
	Files         []string // files: patterns of the important files; nil (the default) makes every change important
	OnlyImportant bool     // only_important: drop unimportant changes instead of building them with the next important one; default false
	SkipCI        []string // skip_ci: regexps; a change whose comments match one does not pass the filter; nil (unset) means DefaultSkipCI, [] skips none

	TreeStableTimer Duration // tree_stable_timer: single_branch and any_branch; zero (the default) starts a buildset for each important change at once

	Period        Duration // period: periodic only, required and positive
	Cron          string   // nightly only: cron, or the spec made of minute, hour, day_of_month, month, day_of_week (default "0 * * * *", as buildbot's Nightly); cron's day of week counts from 0 = Sunday
	OnlyIfChanged bool     // only_if_changed: periodic and nightly; skip a time when no important change arrived since the last buildset (the first time always builds); default false

	Upstream string // upstream: dependent only, required: the scheduler whose buildsets it follows

	Reason     string       // reason: force only, the reason field's default; default DefaultForceReason
	Label      string       // label: force only; "" (the default) means the name
	ButtonName string       // button_name: force only; "" (the default) means the name
	Params     []ForceParam // [[schedulers.params]]: force only, the custom parameters of the form

	Line int // line of the [[schedulers]] table
}

// DefaultForceReason is the default reason of a force scheduler, as
// buildbot's.
const DefaultForceReason = "force build"

// ForceParam is one [[schedulers.params]] table of a force scheduler: a
// field of its form whose value becomes a build property of the same name.
// When a force scheduler declares params, a force request may set no other
// property.
type ForceParam struct {
	Name      string   // name: the property; required, unique in the scheduler; not "reason", "owner", "username" or "scheduler" (but see forceparams.go)
	Label     string   // label; default the name
	Type      string   // type: one of ForceParamTypes; default "string"
	Default   any      // default: string for string, text, choice, username and worker_choice, int64 for int, bool for bool, []string for multiple_choice, any value for fixed (required there); default the zero value, or the first choice
	Required  bool     // required: an empty value is refused; default false
	Choices   []string // choices: choice and multiple_choice only, required there, non-empty
	Regex     string   // regex: string, text and username only; a value must match it (Go syntax)
	NeedEmail bool     // need_email: username only; a value must hold an address, "Name <a@b.c>"; default true, as buildbot's
	Line      int      // line of the table
}

// Keys only some scheduler types take.
var (
	filterKeys   = []string{"branch", "branch_re", "project", "repository", "category", "codebase", "files", "only_important", "skip_ci"}
	changeKeys   = []string{"tree_stable_timer"}
	timedKeys    = []string{"only_if_changed"}
	periodicKeys = []string{"period"}
	nightlyKeys  = []string{"minute", "hour", "day_of_month", "month", "day_of_week", "cron"}
	forceKeys    = []string{"reason", "label", "button_name", "params"}
	dependKeys   = []string{"upstream"}
)

// schedulerKeys returns the type-specific keys typ takes.
func schedulerKeys(typ string) []string {
	switch typ {
	case "single_branch", "any_branch":
		return slices.Concat(filterKeys, changeKeys)
	case "periodic":
		return slices.Concat(filterKeys, timedKeys, periodicKeys)
	case "nightly":
		return slices.Concat(filterKeys, timedKeys, nightlyKeys)
	case "force":
		return forceKeys
	case "dependent":
		return dependKeys
	case "nightly_triggerable":
		return nightlyKeys
	}
	return nil
}

func (d *decoder) scheduler(t *table, seen, builders map[string]int) Scheduler {
	s := Scheduler{Line: t.line()}
	typ, known := t.oneOf("type", "scheduler type", SchedulerTypes...)
	s.Type = typ
	s.Name = t.unique(seen, "scheduler")
	s.BuilderNames = t.names("builder_names", builders, "builder")
	if p, ok := t.integer("priority"); ok {
		s.Priority = int(p)
	}
	if p, ok := t.sub("properties"); ok {
		p.ignore(slices.Collect(maps.Keys(p.m))...)
		s.Properties = p.m
	}
	s.Codebases = d.codebases(t)
	if !known {
		// Unknown or missing type: which keys apply is unknown.
		t.ignore(slices.Concat(filterKeys, changeKeys, timedKeys, periodicKeys, nightlyKeys, forceKeys, dependKeys)...)
		t.done()
		return s
	}
	takes := schedulerKeys(typ)
	for _, k := range slices.Concat(filterKeys, changeKeys, timedKeys, periodicKeys, nightlyKeys, forceKeys, dependKeys) {
		if t.has(k) && !slices.Contains(takes, k) {
			t.ignore(k)
			t.errorf(k, "not for a %s scheduler", typ)
		}
	}
	if slices.Contains(takes, "branch") {
		d.changeFilter(t, &s)
	}
	if slices.Contains(takes, "tree_stable_timer") {
		s.TreeStableTimer, _ = t.duration("tree_stable_timer")
	}
	if slices.Contains(takes, "only_if_changed") {
		s.OnlyIfChanged, _ = t.boolean("only_if_changed")
	}
	switch typ {
	case "periodic":
		if !t.has("period") {
			t.errorf("period", "required for a periodic scheduler")
		} else if p, ok := t.duration("period"); ok {
			if p.Duration <= 0 {
				t.errorf("period", "must be positive")
			} else {
				s.Period = p
			}
		}
	case "nightly", "nightly_triggerable":
		s.Cron = d.nightly(t)
	case "dependent":
		d.dependent(t, &s)
	case "force":
		s.Reason = DefaultForceReason
		if t.has("reason") {
			s.Reason, _ = t.str("reason")
		}
		s.Label, _ = t.str("label")
		s.ButtonName, _ = t.str("button_name")
		if t.has("properties") {
			// buildbot's ForceScheduler gives its base scheduler no
			// properties ({}): its "properties" are its parameters.
			t.errorf("properties", "not for a force scheduler (buildbot's ForceScheduler sets none: its properties are its parameters): "+
				"a value every forced build gets is a param of type \"fixed\" ([[schedulers.params]] name = \"NAME\", type = \"fixed\", default = VALUE)")
			s.Properties = nil
		}
		seenParams := map[string]int{}
		for _, p := range t.tables("params") {
			s.Params = append(s.Params, d.forceParam(p, seenParams))
		}
	}
	t.done()
	return s
}

// changeFilter reads the change filter keys of t into s.
func (d *decoder) changeFilter(t *table, s *Scheduler) {
	s.Branch, _ = t.str("branch")
	if re, ok := t.str("branch_re"); ok {
		if _, err := regexp.Compile(re); err != nil {
			t.errorf("branch_re", "%v", err)
		} else {
			s.BranchRe = re
		}
	}
	s.Project, _ = t.str("project")
	s.Repository, _ = t.str("repository")
	s.Category, _ = t.str("category")
	s.Codebase, _ = t.str("codebase")
	if files, ok := t.strings("files"); ok {
		k := t.path.key("files")
		for i, f := range files {
			if _, err := path.Match(f, ""); err != nil || f == "" {
				t.d.errorAt(k.index(i), k, "bad file pattern %q", f)
			}
		}
		s.Files = files
	}
	s.OnlyImportant, _ = t.boolean("only_important")
	d.skipCI(t, s)
	if s.Type == "single_branch" && !t.has("branch") &&
		!slices.ContainsFunc(filterKeys[1:6], t.has) {
		t.errorf("branch", "required (or another change filter key: branch_re, project, repository, category, codebase)")
	}
}

// MatchFile reports whether the file name matches pattern, as the files key
// of a scheduler: path.Match on the whole name, where an element "**" also
// matches any number of directories.
func MatchFile(pattern, name string) bool {
	return matchElems(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchElems(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchElems(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// cronParser reads the cron key: five fields, as crontab(5).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseCron parses a nightly scheduler's Cron. Parse has checked that it
// parses.
func ParseCron(spec string) (cron.Schedule, error) {
	return cronParser.Parse(spec)
}

// nightlyFields are the cron fields of a nightly scheduler, in cron's order,
// with buildbot's defaults and their ranges.
var nightlyFields = []struct {
	key      string
	dflt     string
	min, max int64
}{
	{"minute", "0", 0, 59},
	{"hour", "*", 0, 23},
	{"day_of_month", "*", 1, 31},
	{"month", "*", 1, 12},
	{"day_of_week", "*", 0, 6}, // buildbot's: 0 is Monday
}

// nightly returns the cron spec of the nightly scheduler t.
func (d *decoder) nightly(t *table) string {
	if t.has("cron") {
		spec, ok := t.required("cron")
		for _, f := range nightlyFields {
			if t.has(f.key) {
				t.ignore(f.key)
				t.errorf(f.key, "set either cron or %s, not both", f.key)
			}
		}
		if !ok {
			return ""
		}
		if _, err := cronParser.Parse(spec); err != nil {
			t.errorf("cron", "%v", err)
			return ""
		}
		return spec
	}
	fields := make([]string, len(nightlyFields))
	for i, f := range nightlyFields {
		fields[i] = f.dflt
		v, ok := t.get(f.key)
		if !ok {
			continue
		}
		var ns []int64
		switch v := v.(type) {
		case string:
			if v != "*" {
				t.errorf(f.key, `expected an integer, an array of integers or "*", got %q`, v)
				continue
			}
			continue
		case int64:
			ns = []int64{v}
		case []any:
			for _, e := range v {
				n, ok := e.(int64)
				if !ok {
					t.errorf(f.key, "expected an array of integers, got an array with a %s", typeName(e))
					ns = nil
					break
				}
				ns = append(ns, n)
			}
			if len(v) == 0 {
				t.errorf(f.key, "must not be empty")
			}
			if len(ns) == 0 {
				continue
			}
		default:
			t.errorf(f.key, `expected an integer, an array of integers or "*", got %s`, typeName(v))
			continue
		}
		strs := make([]string, 0, len(ns))
		for _, n := range ns {
			if n < f.min || n > f.max {
				t.errorf(f.key, "%d out of range (%d-%d)", n, f.min, f.max)
				continue
			}
			if f.key == "day_of_week" {
				n = (n + 1) % 7 // from buildbot's Monday = 0 to cron's Sunday = 0
			}
			strs = append(strs, strconv.FormatInt(n, 10))
		}
		if len(strs) == len(ns) {
			fields[i] = strings.Join(strs, ",")
		}
	}
	return strings.Join(fields, " ")
}

func (d *decoder) forceParam(t *table, seen map[string]int) ForceParam {
	p := ForceParam{Line: t.line(), Type: "string"}
	p.Name = t.unique(seen, "param")
	known := true
	if t.has("type") {
		p.Type, known = t.oneOf("type", "param type", ForceParamTypes...)
	}
	switch p.Name {
	case "reason", "owner", "username", "scheduler":
		if p.Type != "username" {
			t.errorf("name", "%q is reserved", p.Name)
		}
	}
	p.Label = p.Name
	if s, ok := t.str("label"); ok && s != "" {
		p.Label = s
	}
	d.forceParamKinds(t, &p)
	p.Required, _ = t.boolean("required")
	if t.has("choices") && p.Type != "choice" && p.Type != "multiple_choice" {
		t.ignore("choices")
		t.errorf("choices", "only for type = \"choice\" or \"multiple_choice\"")
	}
	if t.has("regex") && p.Type != "string" && p.Type != "text" && p.Type != "username" {
		t.ignore("regex")
		t.errorf("regex", "only for type = \"string\", \"text\" or \"username\"")
	}
	var re *regexp.Regexp
	if s, ok := t.str("regex"); ok {
		var err error
		if re, err = regexp.Compile(s); err != nil {
			t.errorf("regex", "%v", err)
		} else {
			p.Regex = s
		}
	}
	if p.Type == "choice" || p.Type == "multiple_choice" {
		if c, ok := t.strings("choices"); !t.has("choices") {
			t.errorf("choices", "required for type = %q", p.Type)
		} else if ok && len(c) == 0 {
			t.errorf("choices", "must not be empty")
		} else {
			p.Choices = c
		}
	}
	if !known {
		t.ignore("default")
		t.done()
		return p
	}
	switch p.Type {
	case "string", "text", "username", "worker_choice":
		p.Default = ""
		if s, ok := t.str("default"); ok {
			p.Default = s
			if re != nil && s != "" && !re.MatchString(s) {
				t.errorf("default", "%q does not match regex", s)
			}
		}
	case "choice":
		if len(p.Choices) > 0 {
			p.Default = p.Choices[0]
		}
		if s, ok := t.str("default"); ok {
			p.Default = s
			if !slices.Contains(p.Choices, s) && len(p.Choices) > 0 {
				t.errorf("default", "%q is not one of the choices", s)
			}
		}
	case "int":
		p.Default = int64(0)
		if n, ok := t.integer("default"); ok {
			p.Default = n
		}
	case "bool":
		p.Default = false
		if b, ok := t.boolean("default"); ok {
			p.Default = b
		}
	case "fixed", "multiple_choice":
		d.forceParamDefault(t, &p)
	}
	t.done()
	return p
}
