package api

import (
	"net/url"

	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// codebaseFields are the source stamp fields of a force scheduler with
// codebases, as buildbot's CodebaseParameter for each: a nested parameter
// named after the codebase (labelled "Codebase: NAME" but for ""), whose
// fields branch, project, repository and revision have the full names
// NAME_FIELD (FIELD for codebase "").
func codebaseFields(cbs []scheduler.ForceCodebase) []any {
	out := make([]any, 0, len(cbs))
	for _, fc := range cbs {
		var fields []map[string]any
		for _, f := range scheduler.ForceCodebaseFields {
			label := string(f[0]-'a'+'A') + f[1:] + ":"
			tf := textField(f, label, fc.Default(f), 10, "text")
			tf["fullName"] = fc.FieldName(f)
			fields = append(fields, tf)
		}
		n := nestedField(2, fields...)
		n["name"] = fc.Codebase
		if fc.Codebase != "" {
			n["fullName"] = fc.Codebase
			n["label"] = "Codebase: " + fc.Codebase
			n["tablabel"] = n["label"]
		}
		out = append(out, n)
	}
	return out
}

// forceCodebases returns the codebases of the force scheduler called name;
// none when it has none or there is no such scheduler.
func (s *Server) forceCodebases(name string) []scheduler.ForceCodebase {
	for _, fi := range s.ForceSchedulers() {
		if fi.Name == name {
			return fi.Codebases
		}
	}
	return nil
}

// codebasesFromForm adds to fr the fields of the codebases but "" that
// form sends, by their full names, as Force takes them.
func codebasesFromForm(fr *scheduler.ForceRequest, form url.Values, cbs []scheduler.ForceCodebase) {
	for _, fc := range cbs {
		if fc.Codebase == "" {
			continue // Branch, Revision... of the request
		}
		for _, f := range scheduler.ForceCodebaseFields {
			name := fc.FieldName(f)
			if v, ok := form[name]; ok {
				if fr.Properties == nil {
					fr.Properties = map[string]any{}
				}
				fr.Properties[name] = v[0]
			}
		}
	}
}
