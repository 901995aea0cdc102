package config

import (
	"maps"
	"slices"
	"strings"
)

// builderEnvSteps are the step types that take the builder's env, as
// buildbot's ShellMixin steps do (ShellCommand, SetPropertyFromCommand);
// buildbot's source steps and MasterShellCommand do not.
var builderEnvSteps = []string{"shell", "set_property_from_command"}

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
	default:
		return s
	}
	return ""
}

// builderEnv reads the builder's env (buildbot's BuilderConfig.env) and
// puts it under the env of each of its steps that takes it: a step's own
// variable wins.
func (d *decoder) builderEnv(t *table, b *Builder) {
	env, ok := t.sub("env")
	if !ok {
		return
	}
	b.Env = map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(env.m)) {
		if v, ok := env.str(name); ok {
			b.Env[name] = v
		}
	}
	env.done()
	d.checkTemplates(t.path.key("env"), b.Env)
	for i := range b.Steps {
		s := &b.Steps[i]
		if !slices.Contains(builderEnvSteps, s.Type) {
			continue
		}
		merged := maps.Clone(b.Env)
		maps.Copy(merged, s.Env)
		s.Env = merged
	}
}
