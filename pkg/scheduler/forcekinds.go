package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gbb-ci/gbb/pkg/store"
)

// AnyWorker is the worker_choice value that chooses no worker, as
// buildbot's WorkerChoiceParameter.anySentinel.
const AnyWorker = "-any-"

// validEmail is buildbot's VALID_EMAIL_ADDR: what a username param with
// need_email must hold.
var validEmail = regexp.MustCompile(`(?:\S+@[a-zA-Z0-9-]+\.[a-zA-Z0-9.-]+)`)

// kindOf reports whether typ is coerced by coerceKind.
func kindOf(typ string) bool {
	switch typ {
	case "fixed", "username", "multiple_choice", "worker_choice":
		return true
	}
	return false
}

// coerceKind is coerce for the types of kindOf; nil v means not given.
func coerceKind(p ForceParam, v any, re *regexp.Regexp) (any, error) {
	switch p.Type {
	case "fixed":
		// As buildbot's FixedParameter the value is the default; a request
		// that sets another is refused rather than silently overridden.
		if v != nil && fmt.Sprint(v) != fmt.Sprint(p.Default) {
			return nil, fmt.Errorf("fixed to %v: it cannot be changed", p.Default)
		}
		return p.Default, nil
	case "username":
		s, ok := v.(string)
		if v != nil && !ok {
			return nil, fmt.Errorf("expected a string, got %s", valueKind(v))
		}
		if s == "" {
			if p.Required {
				return nil, errors.New("required")
			}
			return p.Default, nil
		}
		if p.NeedEmail && !validEmail.MatchString(s) {
			return nil, errors.New("please fill in email address in the form 'User <email@email.com>'")
		}
		if re != nil && !re.MatchString(s) {
			return nil, fmt.Errorf("%q does not match %s", s, p.Regex)
		}
		return s, nil
	case "multiple_choice":
		var vs []string
		switch x := v.(type) {
		case nil:
			vs = slices.Clone(defaultStrings(p.Default))
		case string:
			if x != "" {
				vs = []string{x}
			}
		case []string:
			vs = x
		case []any:
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("expected a list of strings, got %s in it", valueKind(e))
				}
				vs = append(vs, s)
			}
		default:
			return nil, fmt.Errorf("expected a list of strings, got %s", valueKind(v))
		}
		vs = slices.DeleteFunc(vs, func(s string) bool { return s == "" })
		for _, s := range vs {
			if !slices.Contains(p.Choices, s) {
				return nil, fmt.Errorf("%q is not one of %q", s, p.Choices)
			}
		}
		if len(vs) == 0 && p.Required {
			return nil, errors.New("required")
		}
		if vs == nil {
			vs = []string{}
		}
		return vs, nil
	case "worker_choice":
		s, ok := v.(string)
		if v != nil && !ok {
			return nil, fmt.Errorf("expected a worker name, got %s", valueKind(v))
		}
		s = strings.TrimSpace(s)
		if s == AnyWorker {
			s = ""
		}
		if s == "" && p.Required {
			return nil, errors.New("required")
		}
		return s, nil // checked against the builders by checkWorkerChoice
	}
	return nil, fmt.Errorf("unknown type %q", p.Type)
}

func defaultStrings(v any) []string {
	s, _ := v.([]string)
	return s
}

// owner returns the owner of a force request: with a username param and
// an owner not from a login, the param's checked value.
func (fs *forceScheduler) owner(req ForceRequest) (string, error) {
	i := slices.IndexFunc(fs.info.Params, func(p ForceParam) bool { return p.Type == "username" })
	if i < 0 || req.OwnerFromLogin {
		return req.Owner, nil
	}
	p := fs.info.Params[i]
	var v any
	if req.Owner != "" {
		v = req.Owner
	}
	o, err := coerceKind(p, v, fs.regexps[p.Name])
	if err != nil {
		return "", &ParamError{Field: p.Name, Msg: err.Error()}
	}
	owner, _ := o.(string) // nil: a default of none
	return owner, nil
}

// checkWorkerChoice checks that the worker a worker_choice param chose
// (the property "workername") serves each of the builders.
func (s *Set) checkWorkerChoice(props store.Properties, builders []string) error {
	p, ok := props["workername"]
	if !ok || p.Source != "Force Build Form" {
		return nil
	}
	name := strings.Trim(string(p.Value), `"`)
	for _, b := range builders {
		ws, err := s.builderWorkers(b)
		if err != nil {
			return fmt.Errorf("workers of builder %s: %w", b, err)
		}
		if !slices.Contains(ws, name) {
			return &ParamError{Field: "workername", Msg: fmt.Sprintf("worker %q is not a worker of builder %q", name, b)}
		}
	}
	return nil
}

// builderWorkers returns the names of the workers configured for the
// builder called name, as the store has them.
func (s *Set) builderWorkers(name string) ([]string, error) {
	b, err := s.store.BuilderByName(name)
	if err != nil {
		return nil, err
	}
	all, err := s.store.Workers()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, w := range all {
		if slices.ContainsFunc(w.ConfiguredOn, func(bm store.BuilderMaster) bool { return bm.BuilderID == b.ID }) {
			out = append(out, w.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// fillWorkerChoices sets the choices of the worker_choice params:
// "-any-", then the workers of the scheduler's builders, sorted.
func (s *Set) fillWorkerChoices(infos []ForceInfo) {
	for i := range infos {
		for j, p := range infos[i].Params {
			if p.Type != "worker_choice" {
				continue
			}
			var names []string
			for _, b := range infos[i].BuilderNames {
				ws, err := s.builderWorkers(b)
				if err != nil {
					s.log.Error("list the workers of a builder", "builder", b, "err", err)
					continue
				}
				names = append(names, ws...)
			}
			slices.Sort(names)
			infos[i].Params[j].Choices = append([]string{AnyWorker}, slices.Compact(names)...)
		}
	}
}

// valueKind names the kind of a force parameter's value (decoded JSON, or
// a form's strings) in the words of the errors a user reads: "a number",
// "a list", never a Go type.
func valueKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "a value of another kind"
}
