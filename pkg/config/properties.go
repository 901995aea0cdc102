package config

import (
	"maps"
	"slices"
)

// properties reads the table name of properties (any TOML values), as
// buildbot's properties of a builder or a worker; nil when it is missing.
func properties(t *table, name string) map[string]any {
	p, ok := t.sub(name)
	if !ok {
		return nil
	}
	out := make(map[string]any, len(p.m))
	for _, k := range slices.Sorted(maps.Keys(p.m)) {
		if k == "" {
			p.errorf(k, "a property name must not be empty")
			continue
		}
		out[k], _ = p.get(k)
	}
	p.done()
	return out
}
