package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// factories puts the steps of the [factories.NAME] tables into the
// builders whose factory key names them, before the builders' own steps
// (buildbot's BuildFactory shared by several BuilderConfigs), and removes
// the factories and the factory keys: the second pass sees the builders'
// whole step lists. A factory step keeps its origin, so that a problem in
// it is reported once, at its line in the factory.
func (x *expansion) factories() {
	fk := keyPath{}.key("factories")
	type factory struct {
		steps []map[string]any
		at    keyPath
	}
	known := map[string]factory{}
	if v, ok := x.raw["factories"]; ok {
		delete(x.raw, "factories")
		m, ok := v.(map[string]any)
		if !ok {
			x.errorAt(fk, fk, "expected a table of factories ([factories.NAME]), got %s", typeName(v))
		}
		for _, name := range slices.Sorted(maps.Keys(m)) {
			k := fk.key(name)
			ft, ok := m[name].(map[string]any)
			if !ok {
				x.errorAt(k, k, "expected a table ([factories.%s] with [[factories.%s.steps]]), got %s", quoteKey(name), quoteKey(name), typeName(m[name]))
				continue
			}
			f := factory{at: k}
			for _, key := range slices.Sorted(maps.Keys(ft)) {
				if key != "steps" {
					x.errorAt(k.key(key), k.key(key), "unknown key (a factory has only steps)")
				}
			}
			if sv, ok := ft["steps"]; ok {
				steps, ok := tableArray(sv)
				if !ok {
					x.errorAt(k.key("steps"), k.key("steps"), "expected an array of tables ([[factories.%s.steps]]), got %s", quoteKey(name), typeName(sv))
					continue
				}
				f.steps = steps
			}
			if len(f.steps) == 0 {
				x.errorAt(k, k, "a factory needs at least one step ([[factories.%s.steps]])", quoteKey(name))
			}
			known[name] = f
		}
	}
	bk := keyPath{}.key("builders")
	builders, ok := tableArray(x.raw["builders"])
	if !ok {
		return // the second pass reports it
	}
	x.raw["builders"] = builders
	for i, b := range builders {
		v, ok := b["factory"]
		if !ok {
			continue
		}
		k := bk.index(i).key("factory")
		name, ok := v.(string)
		if !ok {
			x.errorAt(k, k, "expected a string, got %s", typeName(v))
			delete(b, "factory")
			continue
		}
		f, ok := known[name]
		if !ok {
			names := slices.Sorted(maps.Keys(known))
			for j, n := range names {
				names[j] = fmt.Sprintf("%q", n)
			}
			list := "none is defined"
			if len(names) > 0 {
				list = "known: " + strings.Join(names, ", ")
			}
			x.errorAt(k, k, "unknown factory %q (%s)", name, list)
			delete(b, "factory")
			continue
		}
		delete(b, "factory")
		own, ok := tableArray(b["steps"])
		if _, has := b["steps"]; has && !ok {
			continue // the second pass reports it
		}
		// Where the builder's own steps were written, before they move.
		sk := bk.index(i).key("steps")
		ownAt := make([]origin, len(own))
		for j := range own {
			file, path, _ := x.locate(sk.index(j))
			ownAt[j] = origin{src: x.sourceOf(file), path: path}
		}
		steps := make([]map[string]any, 0, len(f.steps)+len(own))
		for j, st := range f.steps {
			steps = append(steps, deepCopy(st).(map[string]any))
			x.remap[sk.index(j).String()] = origin{src: x.sourceOf(x.fileOf(f.at)), path: f.at.key("steps").index(j)}
		}
		for j, st := range own {
			steps = append(steps, st)
			x.remap[sk.index(len(f.steps)+j).String()] = ownAt[j]
		}
		b["steps"] = steps
	}
}

// fileOf returns the file the value at k was written in.
func (x *expansion) fileOf(k keyPath) string {
	file, _, _ := x.locate(k)
	return file
}

// sourceOf returns the source read as file.
func (x *expansion) sourceOf(file string) *source {
	for _, s := range x.files {
		if s.file == file {
			return s
		}
	}
	return x.master
}

// deepCopy copies the tables and arrays of a decoded TOML value, so that
// each builder made from a factory or a matrix owns its values.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	case []map[string]any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e).(map[string]any)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
