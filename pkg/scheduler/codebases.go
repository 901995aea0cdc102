package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// takesCodebase reports whether a change of codebase cb is for the
// scheduler sc: one of its codebases, or any when it configures none (gbb's
// default; buildbot's {"": {}} would take only "").
func takesCodebase(sc config.Scheduler, cb string) bool {
	if sc.Codebases == nil {
		return true
	}
	_, ok := sc.Codebases[cb]
	return ok
}

// changeStamps returns the source stamps of a buildset for changes, as
// buildbot's addBuildsetForChanges: one per codebase of sc, in codebase
// order, from the newest change of that codebase, or, for a codebase
// without a change, its configured repository, branch and revision. A
// scheduler with no codebases gets one stamp per codebase changed.
func changeStamps(sc config.Scheduler, changes []store.Change) []store.SourceStamp {
	if sc.Codebases == nil {
		return sourceStamps(changes)
	}
	byCodebase := map[string]store.SourceStamp{}
	for _, ss := range sourceStamps(changes) {
		byCodebase[ss.Codebase] = ss
	}
	out := make([]store.SourceStamp, 0, len(sc.Codebases))
	for _, cb := range slices.Sorted(maps.Keys(sc.Codebases)) {
		ss, ok := byCodebase[cb]
		if !ok {
			ss = configuredStamp(cb, sc.Codebases[cb])
		}
		out = append(out, ss)
	}
	return out
}

// configuredStamp is the source stamp of codebase cb as c configures it.
func configuredStamp(cb string, c config.Codebase) store.SourceStamp {
	return store.SourceStamp{Codebase: cb, Repository: c.Repository, Branch: c.Branch, Revision: c.Revision}
}

// DuplicateCodebaseError is returned when source stamps name a codebase
// twice: a buildset has at most one source stamp per codebase.
type DuplicateCodebaseError struct{ Codebase string }

func (e *DuplicateCodebaseError) Error() string {
	return fmt.Sprintf("two source stamps for codebase %q", e.Codebase)
}

// stampsWithDefaults returns the source stamps of a buildset asked for
// with given ones (a trigger, a force), as buildbot's
// addBuildsetForSourceStampsWithDefaults: one per codebase of sc, the
// given one when there is one, else as configured; then the given ones of
// other codebases (without their project, as buildbot). All in codebase
// order. A scheduler with no codebases takes the given stamps as they are,
// or, given none, one empty stamp of codebase "" (the latest of the
// default branch).
func stampsWithDefaults(sc config.Scheduler, given []store.SourceStamp) ([]store.SourceStamp, error) {
	byCodebase := map[string]store.SourceStamp{}
	for _, ss := range given {
		if _, dup := byCodebase[ss.Codebase]; dup {
			return nil, &DuplicateCodebaseError{ss.Codebase}
		}
		byCodebase[ss.Codebase] = store.SourceStamp{Codebase: ss.Codebase, Branch: ss.Branch, Revision: ss.Revision, Repository: ss.Repository, Project: ss.Project}
	}
	var out []store.SourceStamp
	switch {
	case sc.Codebases == nil && len(given) == 0:
		out = []store.SourceStamp{{}}
	case sc.Codebases == nil:
		out = slices.Collect(maps.Values(byCodebase))
	default:
		for cb, c := range sc.Codebases {
			ss, ok := byCodebase[cb]
			if !ok {
				ss = configuredStamp(cb, c)
			}
			out = append(out, ss)
		}
		for cb, ss := range byCodebase {
			if _, ok := sc.Codebases[cb]; !ok {
				ss.Project = ""
				out = append(out, ss)
			}
		}
	}
	slices.SortFunc(out, func(a, b store.SourceStamp) int { return cmp.Compare(a.Codebase, b.Codebase) })
	return out, nil
}

// ForceCodebase is a codebase of a force scheduler's form, as buildbot's
// CodebaseParameter: its branch, revision, repository and project fields,
// whose defaults are the scheduler's codebases table.
type ForceCodebase struct {
	Codebase string
	Defaults store.SourceStamp // the fields' defaults (Codebase set)
}

// ForceCodebaseFields are the fields of each codebase of a force form, in
// buildbot's order (sorted).
var ForceCodebaseFields = []string{"branch", "project", "repository", "revision"}

// FieldName is the name of a codebase's field in a force form and in the
// JSON-RPC force parameters, buildbot's fullName: the field's name for
// codebase "", else CODEBASE_FIELD.
func (fc ForceCodebase) FieldName(field string) string {
	if fc.Codebase == "" {
		return field
	}
	return fc.Codebase + "_" + field
}

// Default is the default of a codebase's field.
func (fc ForceCodebase) Default(field string) string {
	switch field {
	case "branch":
		return fc.Defaults.Branch
	case "revision":
		return fc.Defaults.Revision
	case "repository":
		return fc.Defaults.Repository
	case "project":
		return fc.Defaults.Project
	}
	return ""
}

// forceCodebases returns the codebases of a force form of sc, in codebase
// order; nil when sc configures none (the form's one set of fields).
func forceCodebases(sc config.Scheduler) []ForceCodebase {
	if sc.Codebases == nil {
		return nil
	}
	out := make([]ForceCodebase, 0, len(sc.Codebases))
	for _, cb := range slices.Sorted(maps.Keys(sc.Codebases)) {
		out = append(out, ForceCodebase{Codebase: cb, Defaults: configuredStamp(cb, sc.Codebases[cb])})
	}
	return out
}

// forceStamps returns the source stamps of a force request for the
// scheduler fs, and the request's properties without the codebase fields
// it took from them. Without codebases, it is the request's one stamp of
// codebase "". With, it is one per codebase: each field the request's
// value (for codebase "", its Branch, Revision, Repository and Project when
// set; for the others, the property CODEBASE_FIELD), else the field's
// default, as buildbot's CodebaseParameter.
func (fs *forceScheduler) forceStamps(req ForceRequest) ([]store.SourceStamp, map[string]any, error) {
	if fs.info.Codebases == nil {
		ss := store.SourceStamp{Branch: req.Branch, Revision: req.Revision, Repository: req.Repository, Project: req.Project}
		if err := CheckStamp(ss, ForceCodebase{}.FieldName); err != nil {
			return nil, nil, err
		}
		return []store.SourceStamp{ss}, req.Properties, nil
	}
	props := maps.Clone(req.Properties)
	out := make([]store.SourceStamp, 0, len(fs.info.Codebases))
	for _, fc := range fs.info.Codebases {
		ss := store.SourceStamp{Codebase: fc.Codebase}
		dst := map[string]*string{"branch": &ss.Branch, "revision": &ss.Revision, "repository": &ss.Repository, "project": &ss.Project}
		top := map[string]string{"branch": req.Branch, "revision": req.Revision, "repository": req.Repository, "project": req.Project}
		for _, f := range ForceCodebaseFields {
			*dst[f] = fc.Default(f)
			if fc.Codebase == "" {
				if top[f] != "" {
					*dst[f] = top[f]
				}
				continue
			}
			name := fc.FieldName(f)
			v, ok := props[name]
			if !ok {
				continue
			}
			delete(props, name)
			switch v := v.(type) {
			case nil:
			case string:
				*dst[f] = v
			default:
				return nil, nil, &ParamError{Field: name, Msg: fmt.Sprintf("expected a string, got %s", valueKind(v))}
			}
		}
		if err := CheckStamp(ss, fc.FieldName); err != nil {
			return nil, nil, err
		}
		out = append(out, ss)
	}
	return out, props, nil
}

// CheckStamp refuses a source stamp whose branch, revision or repository
// git could take for an option, or that holds a control character (see
// protocol.CheckGitArg), with a *ParamError naming the field as field
// gives it ("branch", "lib_branch", "source_stamps[0].branch"...). Every
// branch name git itself makes passes.
func CheckStamp(ss store.SourceStamp, field func(string) string) error {
	for _, f := range []struct{ name, v string }{{"branch", ss.Branch}, {"revision", ss.Revision}, {"repository", ss.Repository}} {
		if err := protocol.CheckGitArg(f.v); err != nil {
			return &ParamError{Field: field(f.name), Msg: err.Error()}
		}
	}
	return nil
}
