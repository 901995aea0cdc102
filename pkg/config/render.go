package config

import (
	"fmt"
	"reflect"
)

// Render returns a copy of s whose strings rendered when the step runs (the
// fields checkInterpolations checks: name, description, command, env...)
// are replaced by f's result. Maps and slices are copied, so s is left as it
// was. The first error of f is returned, with the key it came from.
func (s Step) Render(f func(string) (string, error)) (Step, error) {
	out := s
	v := reflect.ValueOf(&out).Elem()
	for _, fd := range renderedStepFields {
		fv := v.FieldByName(fd.field)
		if !fv.IsValid() {
			continue
		}
		nv, err := renderValue(fv.Interface(), f)
		if err != nil {
			return s, fmt.Errorf("%s: %w", fd.key, err)
		}
		if nv == nil {
			fv.Set(reflect.Zero(fv.Type()))
		} else {
			fv.Set(reflect.ValueOf(nv))
		}
	}
	return out, nil
}

// renderValue renders each string of v, a value of a rendered field or
// inside one, into a copy.
func renderValue(v any, f func(string) (string, error)) (any, error) {
	switch v := v.(type) {
	case string:
		return f(v)
	case Command:
		if v.Argv != nil {
			argv, err := renderValue(v.Argv, f)
			if err != nil {
				return nil, err
			}
			return Command{Argv: argv.([]string)}, nil
		}
		if v.Script == "" {
			return v, nil
		}
		s, err := f(v.Script)
		return Command{Script: s}, err
	case []TriggerSourceStamp:
		return renderSourceStamps(v, f)
	case []ShellArg:
		return renderShellArgs(v, f)
	case []string:
		if v == nil {
			return v, nil
		}
		out := make([]string, len(v))
		for i, e := range v {
			s, err := f(e)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case []any:
		if v == nil {
			return v, nil
		}
		out := make([]any, len(v))
		for i, e := range v {
			r, err := renderValue(e, f)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case []map[string]any:
		if v == nil {
			return v, nil
		}
		out := make([]map[string]any, len(v))
		for i, e := range v {
			r, err := renderValue(e, f)
			if err != nil {
				return nil, err
			}
			out[i] = r.(map[string]any)
		}
		return out, nil
	case map[string]string:
		if v == nil {
			return v, nil
		}
		out := make(map[string]string, len(v))
		for k, e := range v {
			s, err := f(e)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	case map[string][]string:
		if v == nil {
			return v, nil
		}
		out := make(map[string][]string, len(v))
		for k, e := range v {
			r, err := renderValue(e, f)
			if err != nil {
				return nil, err
			}
			out[k] = r.([]string)
		}
		return out, nil
	case map[string]any:
		if v == nil {
			return v, nil
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			r, err := renderValue(e, f)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}
