package config

import "slices"

// The force parameter types beyond the plain values, as buildbot's:
//
//   - fixed (FixedParameter): default, required, is the value; the form
//     does not show it and a request that sets another value is refused.
//   - username (UserNameParameter): the "Your name" field, whose value
//     is the build's owner; its name must be "username". need_email
//     (default true, as buildbot's) asks for "Name <address>"; regex and
//     required apply. A logged-in user is the owner, unchecked.
//   - multiple_choice (ChoiceStringParameter with multiple=True): several
//     of choices; the property is a list of strings; default a list of
//     choices, default none.
//   - worker_choice (WorkerChoiceParameter): one of the workers of the
//     builders forced, or "-any-" / empty (the default) for no choice; its
//     name must be "workername": the build runs on the chosen worker.

// forceParamKinds checks the keys that only some of the types take.
func (d *decoder) forceParamKinds(t *table, p *ForceParam) {
	switch p.Type {
	case "username":
		if p.Name != "username" {
			t.errorf("name", `a username param must be named "username"`)
		}
		p.NeedEmail = true
		if b, ok := t.boolean("need_email"); ok {
			p.NeedEmail = b
		}
	case "worker_choice":
		if p.Name != "workername" {
			t.errorf("name", `a worker_choice param must be named "workername"`)
		}
	case "fixed":
		if !t.has("default") {
			t.errorf("default", `required for type = "fixed"`)
		}
	}
	if t.has("need_email") && p.Type != "username" {
		t.ignore("need_email")
		t.errorf("need_email", `only for type = "username"`)
	}
}

// forceParamDefault reads the default of a fixed or multiple_choice param.
func (d *decoder) forceParamDefault(t *table, p *ForceParam) {
	switch p.Type {
	case "fixed":
		v, ok := t.get("default")
		if !ok {
			return
		}
		if _, isTable := v.(map[string]any); isTable {
			t.errorf("default", "expected a value, got a table")
			return
		}
		p.Default = v
	case "multiple_choice":
		p.Default = []string{}
		if !t.has("default") {
			return
		}
		vs, ok := t.strings("default")
		if !ok {
			return
		}
		for _, v := range vs {
			if len(p.Choices) > 0 && !slices.Contains(p.Choices, v) {
				t.errorf("default", "%q is not one of the choices", v)
				return
			}
		}
		p.Default = vs
	}
}
