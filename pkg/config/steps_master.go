package config

import (
	"regexp"
	"slices"

	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// Suppression is one entry of a shell step's suppress: a warning line that
// Regex matches (and, when File is set, whose file, the text before the
// line's first ":", as gcc writes "FILE:LINE: warning: ..."), matches File)
// is not counted.
type Suppression struct {
	File  string // file: a regular expression (RE2) for the file; "" means any
	Regex string // regex: a regular expression (RE2) for the line; required
}

// masterStepKeys are the step types that run on the master, with the keys
// only they take: buildbot's SetProperty, SetPropertyFromCommand (which runs
// its command on the worker), MasterShellCommand and a LogRenderable that
// writes a log from the config.
var masterStepKeys = map[string][]string{
	"set_property":              {"property", "value"},
	"set_property_from_command": {"command", "property", "strip", "regex"},
	"master_shell_command":      {"command"},
	"log_message":               {"message", "log_name"},
}

// MasterStepTypes are the step types of masterStepKeys.
var MasterStepTypes = []string{"log_message", "master_shell_command", "set_property", "set_property_from_command"}

// warningKeys are a shell step's keys for counting warnings, as buildbot's
// WarningCountingShellCommand.
var warningKeys = []string{"warning_pattern", "suppress", "max_warn_count"}

// conditionKeys are the keys every step may have beyond the common ones.
var conditionKeys = []string{"warn_on_warnings", "flunk_on_warnings", "do_step_if", "hide_step_if"}

// DefaultLogMessageName is the log a log_message step writes when it has no
// log_name.
const DefaultLogMessageName = "message"

// allMasterStepKeys is every key of masterStepKeys, once.
func allMasterStepKeys() []string {
	var all []string
	for _, keys := range masterStepKeys {
		all = append(all, keys...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// stepConditions reads the keys every step has for warnings and
// conditions: warn_on_warnings (default true), flunk_on_warnings (default
// false), do_step_if and hide_step_if (a condition string, see package
// interpolate, or a boolean).
func (d *decoder) stepConditions(t *table, s *Step) {
	if b, ok := t.boolean("warn_on_warnings"); ok {
		s.QuietWarnings = !b
	}
	s.FlunkOnWarnings, _ = t.boolean("flunk_on_warnings")
	s.DoStepIf = condition(t, "do_step_if")
	s.HideStepIf = condition(t, "hide_step_if")
}

// condition reads a condition key: a string for interpolate.ParseCondition
// or a boolean; nil when it is missing or wrong.
func condition(t *table, name string) *interpolate.Condition {
	v, ok := t.get(name)
	if !ok {
		return nil
	}
	switch v := v.(type) {
	case bool:
		return interpolate.ConstCondition(v)
	case string:
		c, err := interpolate.ParseCondition(v)
		if err != nil {
			t.errorf(name, "bad condition: %v", err)
			return nil
		}
		return c
	}
	t.errorf(name, "expected a condition string or a boolean, got %s", typeName(v))
	return nil
}

// warningOptions reads a shell step's warning_pattern, suppress and
// max_warn_count.
func (d *decoder) warningOptions(t *table, s *Step) {
	if p, ok := t.str("warning_pattern"); ok {
		if p == "" {
			t.errorf("warning_pattern", "must not be empty")
		} else if _, err := regexp.Compile(p); err != nil {
			t.errorf("warning_pattern", "bad regular expression: %v", err)
		} else {
			s.WarningPattern = p
		}
	}
	for _, st := range t.tables("suppress") {
		var sup Suppression
		if re, ok := st.required("regex"); ok {
			if _, err := regexp.Compile(re); err != nil {
				st.errorf("regex", "bad regular expression: %v", err)
			}
			sup.Regex = re
		}
		if f, ok := st.str("file"); ok {
			if _, err := regexp.Compile(f); err != nil {
				st.errorf("file", "bad regular expression: %v", err)
			}
			sup.File = f
		}
		st.done()
		s.Suppress = append(s.Suppress, sup)
	}
	if n, ok := t.integer("max_warn_count"); ok {
		if n < 0 {
			t.errorf("max_warn_count", "must not be negative")
		} else {
			m := int(n)
			s.MaxWarnCount = &m
		}
	}
	if s.WarningPattern == "" && (len(s.Suppress) > 0 || t.has("max_warn_count")) {
		s.WarningPattern = DefaultWarningPattern
	}
}

// DefaultWarningPattern is the warning_pattern a shell step with suppress or
// max_warn_count but no warning_pattern uses: buildbot's.
const DefaultWarningPattern = `(?i).*warning[: ].*`

// masterStep reads the keys of a step of MasterStepTypes and returns the
// keys of the other step types, which it may not have.
func (d *decoder) masterStep(t *table, s *Step) (other []string) {
	mine := masterStepKeys[s.Type]
	for _, k := range slices.Concat(shellKeys, gitKeys, triggerKeys, allWorkerStepKeys(), allMasterStepKeys()) {
		if !slices.Contains(mine, k) && !slices.Contains(other, k) {
			other = append(other, k)
		}
	}
	command := func() {
		if v, ok := t.get("command"); !ok {
			t.errorf("command", "required for a %s step", s.Type)
		} else if cmd, err := parseCommand(v); err != nil {
			t.errorf("command", "%v", err)
		} else {
			s.Command = cmd
		}
	}
	switch s.Type {
	case "set_property":
		s.Property, _ = t.required("property")
		v, ok := t.get("value")
		if !ok {
			t.errorf("value", "required for a set_property step")
		}
		s.Value = v
	case "set_property_from_command":
		command()
		s.Property, _ = t.required("property")
		s.Strip = true
		if b, ok := t.boolean("strip"); ok {
			s.Strip = b
		}
		if re, ok := t.str("regex"); ok {
			r, err := regexp.Compile(re)
			switch {
			case err != nil:
				t.errorf("regex", "bad regular expression: %v", err)
			case r.NumSubexp() == 0:
				t.errorf("regex", "needs a capture group: the property is the first group's match")
			default:
				s.Regex = re
			}
		}
	case "master_shell_command":
		command()
		if t.has("workdir") {
			t.errorf("workdir", "not allowed in a master_shell_command step: it runs in the master's basedir")
		}
		s.Workdir = ""
	case "log_message":
		if !t.has("message") {
			t.errorf("message", "required for a log_message step")
		}
		s.Message, _ = t.str("message")
		s.LogName = DefaultLogMessageName
		if t.has("log_name") {
			if n, ok := t.required("log_name"); ok {
				s.LogName = n
			}
		}
	}
	return other
}
