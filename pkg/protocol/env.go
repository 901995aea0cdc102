package protocol

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

// envRef is a reference to a variable of the worker's environment in an
// env value, as buildbot-worker's runprocess matches it.
var envRef = regexp.MustCompile(`\$\{([0-9a-zA-Z_]*)\}`)

// CommandEnv is the environment of a command: base (the environment of the
// process that runs it, as os.Environ gives it) with env and lists on top,
// as buildbot-worker's runprocess and MasterShellCommand build it. This is
// what ShellCommand.Env and EnvLists mean; the master builds master_shell's
// environment with it too. A list is joined with os.PathListSeparator;
// then each ${NAME} in a value is replaced by NAME's value in base, or ""
// when base has none.
func CommandEnv(base []string, env map[string]string, lists map[string][]string) []string {
	if len(env) == 0 && len(lists) == 0 {
		return base
	}
	own := make(map[string]string, len(base))
	var order []string
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := own[k]; !dup {
			order = append(order, k)
		}
		own[k] = v
	}
	values := maps.Clone(env)
	if values == nil {
		values = map[string]string{}
	}
	for k, l := range lists {
		values[k] = strings.Join(l, string(os.PathListSeparator))
	}
	out := make([]string, 0, len(order)+len(values))
	for _, k := range order {
		if _, set := values[k]; !set {
			out = append(out, k+"="+own[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		v := envRef.ReplaceAllStringFunc(values[k], func(ref string) string {
			return own[ref[2:len(ref)-1]]
		})
		out = append(out, k+"="+v)
	}
	return out
}
