package bbimport

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// schedulerTypes maps buildbot's scheduler classes to gbb's types.
var schedulerTypes = map[string]string{
	"SingleBranchScheduler": "single_branch",
	"AnyBranchScheduler":    "any_branch",
	"ForceScheduler":        "force",
	"Periodic":              "periodic",
	"Nightly":               "nightly",
	"Triggerable":           "triggerable",
	"Dependent":             "dependent",
	"NightlyTriggerable":    "nightly_triggerable",
}

// schedulers writes the schedulers; one whose changes buildbot chose in a
// way gbb cannot (a filter function, fileIsImportant) is left out whole,
// as a counted comment: written, it would build changes buildbot did not.
// A Dependent scheduler of one left out is left out too: gbb would refuse
// its upstream.
func schedulers(w *writer, ss []map[string]any) {
	out := make([]*writer, len(ss))
	dropped := map[string]bool{}
	for i, s := range ss {
		out[i] = &writer{basedir: w.basedir}
		schedulerBody(out[i], s)
		if out[i].drop != "" {
			if s["class"] != "ForceScheduler" {
				out[i].drop += ": buildbot builds fewer of its changes than gbb would"
			}
			dropped[fmt.Sprint(s["name"])] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for i, s := range ss {
			up, _ := newParams(s["params"]).str("upstream_name")
			if s["class"] == "Dependent" && dropped[up] && !dropped[fmt.Sprint(s["name"])] {
				out[i].drop = fmt.Sprintf("its upstream %q is left out", up)
				dropped[fmt.Sprint(s["name"])] = true
				changed = true
			}
		}
	}
	for i, s := range ss {
		if out[i].drop != "" {
			w.printf("\n")
			w.skip("", fmt.Sprintf("scheduler %q (%v)", s["name"], s["class"]), out[i].drop+"; left out whole: write it by hand")
			continue
		}
		w.b.WriteString(out[i].b.String())
		w.count += out[i].count
	}
}

func schedulerBody(w *writer, s map[string]any) {
	cls := s["class"].(string)
	typ := schedulerTypes[cls]
	w.printf("\n")
	if typ == "" {
		w.skip("", fmt.Sprintf("scheduler %q (%s)", s["name"], cls), "gbb has no such scheduler")
		return
	}
	p := newParams(s["params"])
	w.printf("[[schedulers]]\n")
	w.kv("", "type", typ)
	w.kv("", "name", s["name"].(string))
	p.ignore("name", "enabled", "reason", "label", "buttonName")
	if v, _ := p.get("createAbsoluteSourceStamps"); v == true {
		w.skip("", "createAbsoluteSourceStamps", "gbb's schedulers build each codebase's latest change, not the last one seen")
	}
	if v, ok := p.get("builderNames"); ok {
		w.conv("", "builderNames", "builder_names", v)
	}
	if v, ok := p.get("properties"); ok {
		props, _ := v.(map[string]any)
		delete(props, "scheduler")
		if len(props) > 0 {
			w.conv("", "properties", "properties", props)
		}
	}
	if v, ok := p.get("priority"); ok {
		if _, isNum := num(v); isNum {
			w.conv("", "priority", "priority", v)
		} else {
			w.skip("", "priority", describeRaw(v))
		}
	}
	if v, ok := p.get("enabled"); ok && v == false {
		w.note("", "disabled in master.cfg: gbb's schedulers start enabled")
	}
	if f, isForce := s["force"].(map[string]any); isForce && cls == "ForceScheduler" {
		// Its codebases' defaults are in its CodebaseParameters.
		p.ignore("codebases")
		forceCodebases(w, f)
	} else if v, ok := p.get("codebases"); ok {
		codebases(w, v)
	}
	// A timed scheduler's branch (buildbot's Timed branch) filters its
	// changes and is the branch its buildsets build, as gbb's branch key.
	timedBranch := false
	if b, ok := p.get("branch"); ok {
		if s, isStr := b.(string); isStr {
			switch typ {
			case "periodic", "nightly":
				w.kv("", "branch", s)
				timedBranch = true
			case "nightly_triggerable":
				w.skip("", "branch", fmt.Sprintf("%q: gbb's nightly_triggerable builds the triggering build's stamps", s))
			}
		}
	}
	switch typ {
	case "single_branch", "any_branch", "periodic", "nightly":
		filter(w, p, typ, timedBranch)
	}
	switch typ {
	case "single_branch", "any_branch":
		if v, ok := p.m["treeStableTimer"]; ok && v != nil {
			if d, ok := seconds(v); ok {
				w.kv("", "tree_stable_timer", d)
			}
		}
		p.ignore("treeStableTimer")
	case "periodic":
		if d, ok := seconds(p.m["periodicBuildTimer"]); ok {
			w.kv("", "period", d)
		}
		p.ignore("periodicBuildTimer")
	case "dependent":
		if v, ok := p.str("upstream_name"); ok {
			w.kv("", "upstream", v)
		}
		p.ignore("upstream")
	case "force":
		f, _ := s["force"].(map[string]any)
		force(w, f, p.m)
	}
	switch typ {
	case "nightly", "nightly_triggerable":
		for _, pair := range [][2]string{{"minute", "minute"}, {"hour", "hour"}, {"dayOfMonth", "day_of_month"}, {"month", "month"}, {"dayOfWeek", "day_of_week"}} {
			if v, ok := p.get(pair[0]); ok && v != "*" {
				w.conv("", pair[0], pair[1], v)
			}
		}
		if typ == "nightly_triggerable" {
			for _, k := range []string{"onlyIfChanged", "onlyImportant"} {
				if v, ok := p.m[k]; ok && v == false {
					p.ignore(k)
				}
			}
		}
		p.ignore("force_at_minute", "force_at_hour", "force_at_day_of_month", "force_at_month",
			"force_at_day_of_week", "force_at_enabled", "_pendingBuild", "reason")
	}
	switch typ {
	case "periodic", "nightly":
		if v, ok := p.get("onlyIfChanged"); ok {
			w.conv("", "onlyIfChanged", "only_if_changed", v)
		}
	}
	// What buildbot keeps at run time, not config.
	p.ignore("timer", "actuallyStartBuild", "actuateOk", "actuationLock", "actuateAt", "actuateAtTimer", "_reactor", "cron", "now", "lastBuild", "lastChecked")
	p.rest(w, "", cls+" option")
}

// codebases writes a scheduler's codebases unless they are buildbot's
// default, the one codebase "".
func codebases(w *writer, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		w.skip("", "codebases", describeRaw(v))
		return
	}
	if len(m) == 1 {
		if cb, ok := m[""].(map[string]any); ok {
			empty := true
			for _, e := range cb {
				if e != "" && e != nil {
					empty = false
				}
			}
			if empty {
				return
			}
		}
	}
	out := map[string]any{}
	for name, cb := range m {
		c := map[string]any{}
		cm, _ := cb.(map[string]any)
		for _, k := range []string{"repository", "branch", "revision"} {
			if s, ok := cm[k].(string); ok && s != "" {
				c[k] = s
			}
		}
		out[name] = c
	}
	w.kv("", "codebases", out)
}

// forceCodebases writes a force scheduler's codebases table from its
// CodebaseParameters: each field's default is the codebase's default.
// What gbb's force form cannot show (a field's choices, a fixed field, a
// project) is a comment.
func forceCodebases(w *writer, f map[string]any) {
	props, _ := f["properties"].([]any)
	out := map[string]any{}
	for _, e := range props {
		m, _ := e.(map[string]any)
		if m["class"] != "CodebaseParameter" {
			continue
		}
		name, _ := m["codebase"].(string)
		c := map[string]any{}
		fields, _ := m["fields"].([]any)
		for _, fe := range fields {
			fm, _ := fe.(map[string]any)
			fname, _ := fm["name"].(string)
			what := fmt.Sprintf("force codebase %q %s", name, fname)
			d, _ := fm["default"].(string)
			// buildbot refuses a force whose value does not match regex
			// or is empty when required (an injected branch name, say);
			// gbb's codebases check neither, so the scheduler cannot be
			// kept without the check.
			if re, _ := fm["regex"].(string); re != "" && w.drop == "" {
				w.drop = fmt.Sprintf("%s: regex %q, which buildbot checks every forced value against and gbb's force codebases cannot", what, re)
			}
			if fm["required"] == true && w.drop == "" {
				w.drop = what + ": required in buildbot (an empty value refused); gbb's force codebases cannot require it"
			}
			switch fname {
			case "branch", "repository", "revision":
				if d != "" {
					c[fname] = d
				}
			case "project":
				if d != "" {
					w.skip("", what, fmt.Sprintf("default %q: gbb's force form has no project", d))
				}
				continue
			default:
				w.skip("", what, "gbb's force form has no such codebase field")
				continue
			}
			switch fm["class"] {
			case "StringParameter":
			case "FixedParameter":
				w.skip("", what, fmt.Sprintf("fixed to %q in buildbot; gbb's force form lets it be changed", d))
			case "ChoiceStringParameter":
				w.skip("", what, fmt.Sprintf("choices %s in buildbot; gbb's force form takes any string (default %q)", format(strs(fm["choices"])), d))
			default:
				w.skip("", what, fmt.Sprintf("a %v field; gbb's force form takes a string", fm["class"]))
			}
		}
		out[name] = c
	}
	if len(out) == 0 {
		return
	}
	if len(out) == 1 {
		if c, ok := out[""].(map[string]any); ok && len(c) == 0 {
			return
		}
	}
	w.kv("", "codebases", out)
}

// filter writes a scheduler's change filter and importance.
func filter(w *writer, p *params, typ string, hasBranch bool) {
	hasKey := false
	// Every part of the filter gbb cannot express widens it: the
	// scheduler is left out (see scheduler).
	// A timed scheduler that builds whether or not there were changes
	// builds the same: there, a comment.
	widens := typ == "single_branch" || typ == "any_branch" || p.m["onlyIfChanged"] == true
	skip := func(indent, what, why string) {
		if !widens {
			w.skip(indent, what, why)
		} else if w.drop == "" {
			w.drop = what + ": " + why
		}
	}
	if v, ok := p.get("change_filter"); ok {
		m, _ := v.(map[string]any)
		if m["$gbb"] != "filter" {
			skip("", "change_filter", describeRaw(v))
		} else {
			f := newParams(m["kwargs"])
			if b, ok := f.get("branch"); ok && hasBranch {
				skip("", "change_filter branch", describeRaw(b)+": the scheduler's branch is set already")
			} else if ok {
				hasKey = true
				switch b := b.(type) {
				case string:
					w.kv("", "branch", b)
				case []any:
					var alts []string
					for _, s := range strs(b) {
						alts = append(alts, regexp.QuoteMeta(s))
					}
					w.kv("", "branch_re", "^("+strings.Join(alts, "|")+")$")
				default:
					skip("", "change_filter branch", describeRaw(b))
				}
			}
			for _, k := range []string{"project", "repository", "category", "codebase"} {
				if v, ok := f.get(k); ok {
					hasKey = true
					if s, isStr := v.(string); isStr {
						w.kv("", k, s)
					} else {
						skip("", "change_filter "+k, describeRaw(v)+": gbb's filter takes one value")
					}
				}
			}
			if v, ok := f.str("branch_re"); ok {
				hasKey = true
				w.kv("", "branch_re", v)
			}
			for _, k := range slices.Sorted(maps.Keys(f.m)) {
				if !f.used[k] && f.m[k] != nil {
					skip("", "change_filter "+k, describeRaw(f.m[k])+": gbb's change filter has no such key")
				}
			}
		}
	}
	if v, ok := p.get("fileIsImportant"); ok {
		skip("", "fileIsImportant", describeRaw(v)+": gbb takes files = [patterns]")
	}
	if v, ok := p.get("onlyImportant"); ok && v == true {
		w.kv("", "only_important", true)
	}
	if typ == "single_branch" && !hasKey {
		skip("", "single_branch filter", "buildbot's default branch filter has no gbb form: set branch")
	}
}

// forceParamTypes maps buildbot's force parameter classes to gbb's types.
var forceParamTypes = map[string]string{
	"StringParameter":       "string",
	"TextParameter":         "text",
	"IntParameter":          "int",
	"BooleanParameter":      "bool",
	"ChoiceStringParameter": "choice",
	"FixedParameter":        "fixed",
	"WorkerChoiceParameter": "worker_choice",
	"UserNameParameter":     "username",
}

func force(w *writer, f, sp map[string]any) {
	if r, ok := f["reason"].(map[string]any); ok {
		if d, ok := r["default"].(string); ok && d != "force build" {
			w.kv("", "reason", d)
		}
	}
	if r, ok := f["reason"].(map[string]any); ok {
		if l, ok := r["label"].(string); ok && l != "" && l != "reason" {
			w.skip("", "force reason label", fmt.Sprintf("%q: gbb's force form labels it reason", l))
		}
	}
	if s, ok := f["label"].(string); ok && s != "" && s != sp["name"] {
		w.kv("", "label", s)
	}
	if s, ok := f["buttonName"].(string); ok && s != "" && s != sp["name"] {
		w.kv("", "button_name", s)
	}
	var ps []map[string]any
	if u, ok := f["username"].(map[string]any); ok {
		if u["need_email"] == false || u["required"] == true || u["regex"] != nil {
			ps = append(ps, u)
		}
	}
	props, _ := f["properties"].([]any)
	for _, p := range props {
		m, _ := p.(map[string]any)
		if m["class"] == "CodebaseParameter" {
			continue // in the scheduler's codebases
		}
		ps = append(ps, m)
	}
	for _, m := range ps {
		forceParam(w, m)
	}
}

func forceParam(w *writer, m map[string]any) {
	cls, _ := m["class"].(string)
	typ := forceParamTypes[cls]
	if cls == "ChoiceStringParameter" && m["multiple"] == true {
		typ = "multiple_choice"
	}
	if typ == "" {
		w.skip("  ", fmt.Sprintf("force parameter %q (%s)", m["name"], cls), "gbb has no such parameter type")
		return
	}
	w.printf("  [[schedulers.params]]\n")
	w.kv("  ", "name", m["name"].(string))
	w.kv("  ", "type", typ)
	if s, ok := m["label"].(string); ok && s != "" && s != m["name"] {
		w.kv("  ", "label", s)
	}
	if d, ok := m["default"]; ok && d != nil && d != "" {
		switch typ {
		case "bool":
			if b, ok := d.(bool); ok {
				w.kv("  ", "default", b)
			}
		case "int":
			if n, ok := num(d); ok {
				w.kv("  ", "default", n)
			} else if s, ok := d.(string); ok && s != "" {
				w.kv("  ", "default", s)
			}
		default:
			w.conv("  ", "default", "default", d)
		}
	}
	if m["required"] == true {
		w.kv("  ", "required", true)
	}
	if typ == "choice" || typ == "multiple_choice" {
		w.conv("  ", "choices", "choices", m["choices"])
	}
	if s, ok := m["regex"].(string); ok && s != "" && (typ == "string" || typ == "text" || typ == "username") {
		w.kv("  ", "regex", s)
	}
	if typ == "username" {
		if b, ok := m["need_email"].(bool); ok && !b {
			w.kv("  ", "need_email", false)
		}
	}
}
