package config

import (
	"maps"
	"slices"
	"strings"
)

// builderEnvSteps are the step types that take the builder's env, as
// buildbot's ShellMixin steps do (ShellCommand, SetPropertyFromCommand,
// ShellSequence); buildbot's source steps and MasterShellCommand do not.
var builderEnvSteps = []string{"shell", "set_property_from_command", "shell_sequence"}

// workerBuildDir reads the builder's workerbuilddir: one directory name
// in the worker's base directory. buildbot takes a relative path; gbb's
// worker keeps each builder in one directory of its base directory and
// refuses any other (pkg/worker's Executor), so a path with "/" is refused
// here, where the user sees it.
func (d *decoder) workerBuildDir(t *table) string {
	if !t.has("workerbuilddir") {
		return ""
	}
	s, ok := t.required("workerbuilddir")
	if !ok {
		return ""
	}
	switch {
	case s == "." || s == "..":
		t.errorf("workerbuilddir", "%q: must name a directory inside the worker's base directory", s)
	case strings.ContainsAny(s, `/\`) || len(s) > 1 && s[1] == ':':
		t.errorf("workerbuilddir", "%q: must be one directory name in the worker's base directory, without / (gbb's worker keeps each builder in one directory there)", s)
	case strings.HasPrefix(s, ".") || strings.HasPrefix(s, "-"):
		t.errorf("workerbuilddir", "%q: must not start with %q (the worker keeps its own state in hidden directories such as .gbb-running, and a leading \"-\" reads as an option)", s, s[:1])
	case workerOwnName(s):
		t.errorf("workerbuilddir", "%q: is a file of the worker's own in its base directory (%s): choose another name", s, strings.Join(workerOwnNames, ", "))
	default:
		return s
	}
	return ""
}

// workerOwnNames are the files and directories a worker keeps in its base
// directory besides the builders' (gbb-worker's and buildbot-worker's);
// the logs' rotated copies (worker.log.1) are theirs too.
var workerOwnNames = []string{"info", "worker.toml", "worker.log", "worker.pid", "buildbot.tac", "twistd.log", "twistd.pid"}

// workerOwnName reports whether name is one of workerOwnNames or a rotated
// copy of a log.
func workerOwnName(name string) bool {
	return slices.Contains(workerOwnNames, name) ||
		strings.HasPrefix(name, "worker.log.") || strings.HasPrefix(name, "twistd.log.")
}

// builderEnv reads the builder's env (buildbot's BuilderConfig.env) and
// puts it under the env of each of its steps that takes it: a step's own
// variable wins.
func (d *decoder) builderEnv(t *table, b *Builder) {
	env, ok := t.sub("env")
	if !ok {
		return
	}
	b.Env, b.EnvLists = readEnv(env)
	env.done()
	d.checkTemplates(t.path.key("env"), b.Env)
	d.checkTemplates(t.path.key("env"), b.EnvLists)
	for i := range b.Steps {
		s := &b.Steps[i]
		if !slices.Contains(builderEnvSteps, s.Type) {
			continue
		}
		env, lists := maps.Clone(b.Env), maps.Clone(b.EnvLists)
		for name := range s.Env {
			delete(lists, name)
		}
		for name := range s.EnvLists {
			delete(env, name)
		}
		s.Env, s.EnvLists = mergeEnv(env, s.Env), mergeEnv(lists, s.EnvLists)
	}
}

// mergeEnv is base with over's entries on top; nil when both are empty.
func mergeEnv[V any](base, over map[string]V) map[string]V {
	if len(base)+len(over) == 0 {
		return nil
	}
	out := make(map[string]V, len(base)+len(over))
	maps.Copy(out, base)
	maps.Copy(out, over)
	return out
}

// readEnv reads an env table: each value a string, or an array of strings
// that the worker joins with its path list separator (":"), as buildbot
// joins a list with os.pathsep. Strings and lists come back apart, nil
// when there are none.
func readEnv(env *table) (map[string]string, map[string][]string) {
	var strs map[string]string
	var lists map[string][]string
	for _, name := range slices.Sorted(maps.Keys(env.m)) {
		if _, isList := env.m[name].([]any); isList {
			if v, ok := env.strings(name); ok {
				if lists == nil {
					lists = map[string][]string{}
				}
				lists[name] = v
			}
			continue
		}
		v, ok := env.get(name)
		if !ok {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			env.errorf(name, "expected a string or an array of strings (joined with \":\"), got %s", typeName(v))
			continue
		}
		if strs == nil {
			strs = map[string]string{}
		}
		strs[name] = s
	}
	return strs, lists
}
