package bbimport

import (
	"cmp"
	"encoding/json"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
)

// axis is one key of a builder matrix and its values, in the order the
// builders had them.
type axis struct {
	name   string
	values []string
}

var kwName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// matrixOf finds the [builders.matrix] that makes exactly the builders bs
// (which share their steps), in their order: its keys are properties
// every builder sets to a string, whose values vary and make every
// combination once (the matrix sets them as properties, as the builders
// did); every other key of the builders must then be the same once those
// values are written %(kw:KEY)s. texts, when not nil, are the builders'
// own rendered steps, which must be the same too once so written. It
// returns the templated builder, its axes and its templated steps, or
// false.
func matrixOf(bs []map[string]any, texts []string) (map[string]any, []axis, string, bool) {
	if len(bs) < 2 {
		return nil, nil, "", false
	}
	props := make([]map[string]any, len(bs))
	for i, b := range bs {
		props[i], _ = b["properties"].(map[string]any)
		if props[i] == nil {
			return nil, nil, "", false
		}
	}
	var axes []axis
	for _, k := range slices.Sorted(maps.Keys(props[0])) {
		if !kwName.MatchString(k) {
			continue
		}
		var a axis
		ok := true
		for _, p := range props {
			s, isStr := p[k].(string)
			if !isStr || s == "" || strings.Contains(s, "%") {
				ok = false
				break
			}
			if !slices.Contains(a.values, s) {
				a.values = append(a.values, s)
			}
		}
		if ok && len(a.values) > 1 {
			a.name = k
			axes = append(axes, a)
		}
	}
	if len(axes) == 0 {
		return nil, nil, "", false
	}
	n := 1
	for _, a := range axes {
		n *= len(a.values)
	}
	// gbb refuses a matrix of more builders than its limit: they stay
	// builders one by one.
	if n != len(bs) || n > config.MaxMatrixBuilders {
		return nil, nil, "", false
	}
	// The order of the keys whose expansion (the first key slowest) gives
	// the builders' own order, else any.
	axes = bestOrder(axes, props)
	// Only a matrix that expands in the builders' own order: buildbot's
	// order is the UI's, and the loop's.
	for i, combo := range combos(axes) {
		for j, a := range axes {
			if props[i][a.name] != combo[j] {
				return nil, nil, "", false
			}
		}
	}
	clean := func(b map[string]any) map[string]any {
		c := deepCopy(b).(map[string]any)
		delete(c, "steps")
		if s, _ := c["workerbuilddir"].(string); s == (config.Builder{Name: c["name"].(string)}).WorkerDir() {
			delete(c, "workerbuilddir")
		}
		p := c["properties"].(map[string]any)
		for _, a := range axes {
			delete(p, a.name)
		}
		return c
	}
	kwOf := func(i int) map[string]string {
		kw := map[string]string{}
		for _, a := range axes {
			kw[a.name] = props[i][a.name].(string)
		}
		return kw
	}
	tmpl := template(clean(bs[0]), kwOf(0))
	seen := map[string]bool{}
	for i, b := range bs {
		kw := kwOf(i)
		key, _ := json.Marshal(kw)
		if seen[string(key)] {
			return nil, nil, "", false
		}
		seen[string(key)] = true
		if !reflect.DeepEqual(expand(deepCopy(tmpl), kw), any(clean(b))) {
			return nil, nil, "", false
		}
	}
	name, _ := tmpl["name"].(string)
	for _, a := range axes {
		if !strings.Contains(name, "%(kw:"+a.name+")s") {
			return nil, nil, "", false
		}
	}
	if texts == nil {
		return tmpl, axes, "", true
	}
	// Steps are TOML text: only values that need no quoting there.
	for _, a := range axes {
		for _, v := range a.values {
			if !plainValue.MatchString(v) {
				return nil, nil, "", false
			}
		}
	}
	text := templateText(texts[0], kwOf(0))
	for i := range bs {
		if expandText(text, kwOf(i)) != texts[i] {
			return nil, nil, "", false
		}
	}
	return tmpl, axes, text, true
}

var plainValue = regexp.MustCompile(`^[A-Za-z0-9._+-]+$`)

// templateText writes kw's values in text as %(kw:KEY)s, the longest
// values first.
func templateText(text string, kw map[string]string) string {
	keys := slices.SortedFunc(maps.Keys(kw), func(a, b string) int {
		return cmp.Or(cmp.Compare(len(kw[b]), len(kw[a])), strings.Compare(a, b))
	})
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, kw[k], "%(kw:"+k+")s")
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// expandText writes kw's values for %(kw:KEY)s in text.
func expandText(text string, kw map[string]string) string {
	return expand(text, kw).(string)
}

// bestOrder orders axes so that expanding them (the first slowest) gives
// the builders in the order of props, when one order does.
func bestOrder(axes []axis, props []map[string]any) []axis {
	perms := [][]axis{axes}
	if len(axes) <= 4 {
		perms = permutations(axes)
	}
	for _, p := range perms {
		ok := true
		for i, combo := range combos(p) {
			for j, a := range p {
				if props[i][a.name] != combo[j] {
					ok = false
				}
			}
		}
		if ok {
			return p
		}
	}
	return axes
}

func permutations(axes []axis) [][]axis {
	if len(axes) <= 1 {
		return [][]axis{slices.Clone(axes)}
	}
	var out [][]axis
	for i := range axes {
		rest := slices.Concat(axes[:i:i], axes[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]axis{axes[i]}, p...))
		}
	}
	return out
}

// combos lists the combinations of axes' values, the first axis slowest.
func combos(axes []axis) [][]string {
	out := [][]string{{}}
	for _, a := range axes {
		var next [][]string
		for _, c := range out {
			for _, v := range a.values {
				next = append(next, append(slices.Clone(c), v))
			}
		}
		out = next
	}
	return out
}

// template writes kw's values in every string of v as %(kw:KEY)s, the
// longest values first.
func template(v map[string]any, kw map[string]string) map[string]any {
	keys := slices.SortedFunc(maps.Keys(kw), func(a, b string) int {
		return cmp.Or(cmp.Compare(len(kw[b]), len(kw[a])), strings.Compare(a, b))
	})
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, kw[k], "%(kw:"+k+")s")
	}
	r := strings.NewReplacer(pairs...)
	return mapStrings(v, r.Replace).(map[string]any)
}

// expand writes kw's values for %(kw:KEY)s in every string of v.
func expand(v any, kw map[string]string) any {
	var pairs []string
	for _, k := range slices.Sorted(maps.Keys(kw)) {
		pairs = append(pairs, "%(kw:"+k+")s", kw[k])
	}
	return mapStrings(v, strings.NewReplacer(pairs...).Replace)
}

func mapStrings(v any, f func(string) string) any {
	switch v := v.(type) {
	case string:
		return f(v)
	case []any:
		for i, e := range v {
			v[i] = mapStrings(e, f)
		}
	case map[string]any:
		for k, e := range v {
			if k == "$gbb" || k == "class" || k == "module" {
				continue
			}
			v[k] = mapStrings(e, f)
		}
	}
	return v
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	}
	return v
}
