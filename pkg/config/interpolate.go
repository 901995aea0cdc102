package config

import (
	"maps"
	"reflect"
	"slices"

	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// renderedStepFields are the Step fields rendered with buildbot's
// Interpolate when the step runs (as buildbot renders a step's name,
// description, workdir, command, env and a Trigger's set_properties), with
// their keys. Every string of them is checked at load time, so that a bad
// expression is a config error rather than a failed build.
var renderedStepFields = []struct{ field, key string }{
	{"Name", "name"},
	{"Description", "description"},
	{"Command", "command"},
	{"Workdir", "workdir"},
	{"Env", "env"},
	{"EnvLists", "env"},
	{"RepoURL", "repourl"},
	{"Branch", "branch"},
	{"SSHPrivateKeyFile", "ssh_private_key_file"},
	{"SetProperties", "set_properties"},
	{"SourceStamps", "source_stamps"},
	{"Logfiles", "logfiles"},
	{"Dir", "dir"},
	{"Path", "path"},
	{"WorkerSrc", "workersrc"},
	{"WorkerDest", "workerdest"},
	{"MasterSrc", "mastersrc"},
	{"MasterDest", "masterdest"},
	{"Content", "s"},
	{"Property", "property"},
	{"Value", "value"},
	{"Message", "message"},
	{"LogName", "log_name"},
	{"Commands", "commands"},
	{"WorkerSrcs", "workersrcs"},
}

// literalStepFields are the Step fields holding strings that are taken as
// they are: choices checked against their values, and names checked against
// the config. TestStepFieldsClassified makes every new string field of Step
// go in one list or the other.
var literalStepFields = []string{"Type", "Mode", "Method", "SchedulerNames", "InterruptSignal", "WarningPattern", "Suppress", "Regex", "Codebase"}

// checkInterpolations parses every string of s that is rendered when it
// runs, reporting a bad one at its key (an element of an array, a key of
// env or set_properties). It looks at the keys t has: a default is no
// business of the step.
func (d *decoder) checkInterpolations(t *table, s *Step) {
	v := reflect.ValueOf(s).Elem()
	for _, f := range renderedStepFields {
		if fv := v.FieldByName(f.field); fv.IsValid() && t.has(f.key) {
			d.checkTemplates(t.path.key(f.key), fv.Interface())
		}
	}
}

// checkTemplates parses each string in v, a value at k.
func (d *decoder) checkTemplates(k keyPath, v any) {
	switch v := v.(type) {
	case string:
		if _, err := interpolate.Parse(v); err != nil {
			d.errorAt(k, k, "bad interpolation: %v", err)
		}
	case Command:
		if v.Argv != nil {
			d.checkTemplates(k, v.Argv)
		} else {
			d.checkTemplates(k, v.Script)
		}
	case []string:
		for i, e := range v {
			d.checkTemplates(k.index(i), e)
		}
	case []any:
		for i, e := range v {
			d.checkTemplates(k.index(i), e)
		}
	case []map[string]any:
		for i, e := range v {
			d.checkTemplates(k.index(i), e)
		}
	case map[string]string:
		for _, name := range slices.Sorted(maps.Keys(v)) {
			d.checkTemplates(k.key(name), v[name])
		}
	case map[string]any:
		for _, name := range slices.Sorted(maps.Keys(v)) {
			d.checkTemplates(k.key(name), v[name])
		}
	case map[string][]string:
		for _, name := range slices.Sorted(maps.Keys(v)) {
			d.checkTemplates(k.key(name), v[name])
		}
	}
}
