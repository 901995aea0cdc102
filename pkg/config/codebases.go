package config

import (
	"maps"
	"slices"

	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// Codebase is one entry of a scheduler's codebases table, as one of the
// dicts of buildbot's codebases argument: the source stamp a buildset
// carries for the codebase when no change of it is built (the force
// form's defaults, for a force scheduler). Empty fields are buildbot's
// None: the remote's default branch, the latest revision.
type Codebase struct {
	Repository string // repository
	Branch     string // branch
	Revision   string // revision: "" (the default) means the latest
}

// codebaseKeys are the keys of one codebase, buildbot's known_keys.
var codebaseKeys = []string{"branch", "repository", "revision"}

// codebases reads the codebases key of a scheduler: a table of codebase
// name → {repository, branch, revision}, or an array of codebase names
// (each with no attributes), as buildbot takes a dict of dicts or a list of
// strings. It returns nil when the key is not set.
func (d *decoder) codebases(t *table) map[string]Codebase {
	v, ok := t.get("codebases")
	if !ok {
		return nil
	}
	k := t.path.key("codebases")
	out := map[string]Codebase{}
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			name, ok := e.(string)
			if !ok {
				d.errorAt(k.index(i), k.index(i), "expected a codebase name (a string), got %s", typeName(e))
				continue
			}
			if _, dup := out[name]; dup {
				d.errorAt(k.index(i), k.index(i), "codebase %q named twice", name)
				continue
			}
			out[name] = Codebase{}
		}
	case map[string]any:
		ct := d.table(k, v)
		for _, name := range slices.Sorted(maps.Keys(v)) {
			cb, ok := ct.sub(name)
			if !ok {
				continue
			}
			var c Codebase
			c.Repository, _ = cb.str("repository")
			c.Branch, _ = cb.str("branch")
			c.Revision, _ = cb.str("revision")
			for key := range cb.m {
				if !slices.Contains(codebaseKeys, key) {
					cb.ignore(key)
					cb.errorf(key, "unknown codebase key (want branch, repository or revision)")
				}
			}
			cb.done()
			out[name] = c
		}
		ct.done()
	default:
		t.errorf("codebases", "expected a table of codebases or an array of codebase names, got %s", typeName(v))
		return nil
	}
	if len(out) == 0 {
		t.errorf("codebases", "must name at least one codebase (leave it out for the one codebase \"\")")
		return nil
	}
	return out
}

// TriggerSourceStamp is one [[builders.steps.source_stamps]] table of a
// trigger step: a source stamp the triggered builds build instead of the
// triggering build's, as one dict of buildbot's Trigger sourceStamps. Its
// strings are rendered (%(prop:…)s) when the step runs.
type TriggerSourceStamp struct {
	Codebase   string // codebase; default ""; each codebase at most once
	Repository string // repository
	Branch     string // branch
	Revision   string // revision: "" means the latest
	Project    string // project
}

// triggerSourceKeys are the keys of a trigger step's source stamp.
var triggerSourceKeys = []string{"codebase", "repository", "branch", "revision", "project"}

// triggerSources reads the codebase options of a trigger step, as
// buildbot's Trigger: always_use_latest and source_stamps, neither with
// the other nor with update_source_stamp.
func (d *decoder) triggerSources(t *table, s *Step) {
	s.AlwaysUseLatest, _ = t.boolean("always_use_latest")
	seen := map[string]bool{}
	for _, st := range t.tables("source_stamps") {
		var ss TriggerSourceStamp
		fields := []*string{&ss.Codebase, &ss.Repository, &ss.Branch, &ss.Revision, &ss.Project}
		for i, key := range triggerSourceKeys {
			*fields[i], _ = st.str(key)
			if st.has(key) {
				if _, err := interpolate.Parse(*fields[i]); err != nil {
					st.errorf(key, "bad interpolation: %v", err)
				}
			}
		}
		if seen[ss.Codebase] {
			st.errorf("codebase", "codebase %q given twice", ss.Codebase)
		}
		seen[ss.Codebase] = true
		st.done()
		s.SourceStamps = append(s.SourceStamps, ss)
	}
	if t.has("source_stamps") && len(s.SourceStamps) == 0 {
		t.errorf("source_stamps", "must not be empty (leave it out to pass this build's source stamps)")
	}
	switch {
	case s.AlwaysUseLatest && t.has("source_stamps"):
		t.errorf("always_use_latest", "set either always_use_latest or source_stamps, not both")
	case s.AlwaysUseLatest && t.has("update_source_stamp"):
		t.errorf("always_use_latest", "set either always_use_latest or update_source_stamp, not both")
	case t.has("source_stamps") && t.has("update_source_stamp"):
		t.errorf("source_stamps", "set either source_stamps or update_source_stamp, not both")
	}
	if s.AlwaysUseLatest || len(s.SourceStamps) > 0 {
		s.UpdateSourceStamp = false
	}
}

// renderSourceStamps renders each string of a trigger step's source_stamps
// into a copy.
func renderSourceStamps(v []TriggerSourceStamp, f func(string) (string, error)) (any, error) {
	if v == nil {
		return v, nil
	}
	out := make([]TriggerSourceStamp, len(v))
	for i, ss := range v {
		fields := []*string{&ss.Codebase, &ss.Repository, &ss.Branch, &ss.Revision, &ss.Project}
		for _, p := range fields {
			r, err := f(*p)
			if err != nil {
				return nil, err
			}
			*p = r
		}
		out[i] = ss
	}
	return out, nil
}
