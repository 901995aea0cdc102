package ui

import (
	"net/url"

	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// codebaseInput is one codebase of a force form: its branch, revision,
// repository and project fields, as buildbot's CodebaseParameter shows them.
type codebaseInput struct {
	Codebase string
	Fields   []codebaseField
}

// codebaseField is a field of a codebase of a force form.
type codebaseField struct {
	Label, Name, Value string
}

// codebaseInputs returns the codebases of fi's form, each field with its
// default, or the value of a refused POST when posted is not nil; none
// when fi has no codebases (the form has one set of the four fields).
func codebaseInputs(fi scheduler.ForceInfo, posted url.Values) []codebaseInput {
	var out []codebaseInput
	for _, fc := range fi.Codebases {
		in := codebaseInput{Codebase: fc.Codebase}
		for _, f := range []struct{ field, label string }{{"branch", "Branch"}, {"revision", "Revision"}, {"repository", "Repository"}, {"project", "Project"}} {
			name := fc.FieldName(f.field)
			v := fc.Default(f.field)
			if posted != nil {
				v = posted.Get(name)
			}
			in.Fields = append(in.Fields, codebaseField{Label: f.label, Name: name, Value: v})
		}
		out = append(out, in)
	}
	return out
}
