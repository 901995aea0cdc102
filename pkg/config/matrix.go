package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// MaxMatrixBuilders is the most builders one matrix may make: more is a
// mistake sooner than a plan (ten keys of ten values are ten billion).
const MaxMatrixBuilders = 1000

// matrixAxis is one key of a [builders.matrix] table: a name and its
// values.
type matrixAxis struct {
	name   string
	values []string
}

// matrices expands every builder with a [builders.matrix] table into one
// builder per combination of its values, in the order the keys are
// written (the first key varies slowest, as nested loops in a master.cfg),
// each value in the order given. In every string of such a builder (its
// steps' too, factories' included), %(kw:KEY)s becomes the combination's
// value; each key is also a property of the builder; and
// [builders.matrix.workers] KEY.VALUE = [...] chooses the worker_names of
// the combinations with that value.
func (x *expansion) matrices() {
	builders, ok := tableArray(x.raw["builders"])
	if !ok {
		return
	}
	bk := keyPath{}.key("builders")
	var out []map[string]any
	newIndex := make([][]int, len(builders))
	// chosenAt is where each new builder's worker_names were chosen, when
	// its matrix chose them.
	chosenAt := map[int]origin{}
	for i, b := range builders {
		x.chosenAt = nil
		for j, nb := range x.matrix(bk.index(i), b) {
			if o, ok := x.chosenAt[j]; ok {
				chosenAt[len(out)] = o
			}
			newIndex[i] = append(newIndex[i], len(out))
			out = append(out, nb)
		}
	}
	x.rekeyBuilders(len(builders), func(i int) []int { return newIndex[i] })
	for j, o := range chosenAt {
		x.remap[bk.index(j).key("worker_names").String()] = o
	}
	x.chosenAt = nil
	x.raw["builders"] = out
}

// matrix returns the builders the builder b at k expands to: b alone (its
// kw substituted) when it has no matrix.
func (x *expansion) matrix(k keyPath, b map[string]any) []map[string]any {
	mv, has := b["matrix"]
	if !has {
		// Without a matrix, %(kw:...)s is left to the build, as before
		// matrices were.
		return []map[string]any{b}
	}
	delete(b, "matrix")
	mk := k.key("matrix")
	m, ok := mv.(map[string]any)
	if !ok {
		x.errorAt(mk, mk, "expected a table ([builders.matrix]), got %s", typeName(mv))
		return []map[string]any{b}
	}
	var axes []matrixAxis
	var workers map[string]any
	keys := 0 // keys other than workers
	for _, name := range slices.Sorted(maps.Keys(m)) {
		v := m[name]
		ak := mk.key(name)
		if name == "workers" {
			if workers, ok = v.(map[string]any); !ok {
				x.errorAt(ak, ak, "expected a table (KEY.VALUE = [worker names]), got %s", typeName(v))
			}
			continue
		}
		keys++
		if !isKwName(name) {
			x.errorAt(ak, ak, "a matrix key must be a name of letters, digits and _ (it is used as %%(kw:%s)s)", name)
			continue
		}
		arr, ok := v.([]any)
		if !ok {
			x.errorAt(ak, ak, "expected an array of strings, got %s", typeName(v))
			continue
		}
		if len(arr) == 0 {
			x.errorAt(ak, ak, "must not be empty: an empty matrix key makes no builder")
			continue
		}
		axis := matrixAxis{name: name}
		bad := false
		for j, e := range arr {
			s, ok := e.(string)
			switch {
			case !ok:
				x.errorAt(ak.index(j), ak, "expected a string, got %s", typeName(e))
				bad = true
			case s == "" || strings.Contains(s, "%"):
				x.errorAt(ak.index(j), ak, "%q: a matrix value must be non-empty and without %%", s)
				bad = true
			case slices.Contains(axis.values, s):
				x.errorAt(ak.index(j), ak, "%q is given twice", s)
				bad = true
			}
			axis.values = append(axis.values, s)
		}
		if !bad {
			axes = append(axes, axis)
		}
	}
	if len(axes) == 0 {
		if keys == 0 {
			x.errorAt(mk, mk, "a matrix needs at least one key with values, such as os = [\"freebsd\", \"linux\"]")
		}
		return []map[string]any{b}
	}
	n := 1
	for _, a := range axes {
		n *= len(a.values)
		if n > MaxMatrixBuilders {
			x.errorAt(mk, mk, "makes more than %d builders: split it", MaxMatrixBuilders)
			return []map[string]any{b}
		}
	}
	x.sortAxes(mk, axes)
	chosen := x.matrixWorkers(mk, axes, workers)
	if name, ok := b["name"].(string); ok {
		for _, a := range axes {
			if !strings.Contains(name, "%(kw:"+a.name+")s") {
				x.errorAt(k.key("name"), k.key("name"), "%q does not use %%(kw:%s)s: the builders of the matrix would share a name", name, a.name)
				return []map[string]any{b}
			}
		}
	}
	if props, ok := b["properties"].(map[string]any); ok {
		for _, a := range axes {
			if _, dup := props[a.name]; dup {
				pk := k.key("properties").key(a.name)
				x.errorAt(pk, pk, "is a matrix key too: the matrix sets it to each builder's value")
			}
		}
	}
	var out []map[string]any
	for _, combo := range combinations(axes) {
		nb := deepCopy(b).(map[string]any)
		kw := map[string]string{}
		for j, a := range axes {
			kw[a.name] = combo[j]
		}
		x.substituteKw(k, nb, kw)
		props, _ := nb["properties"].(map[string]any)
		if props == nil {
			props = map[string]any{}
		}
		for _, a := range axes {
			props[a.name] = kw[a.name]
		}
		nb["properties"] = props
		var names []any
		for _, a := range axes {
			ws := chosen[a.name][kw[a.name]]
			if len(ws) > 0 && names == nil {
				file, path, _ := x.locate(mk.key("workers").key(a.name).key(kw[a.name]))
				if x.chosenAt == nil {
					x.chosenAt = map[int]origin{}
				}
				x.chosenAt[len(out)] = origin{src: x.sourceOf(file), path: path}
			}
			for _, w := range ws {
				if !slices.Contains(names, any(w)) {
					names = append(names, w)
				}
			}
		}
		if names != nil {
			nb["worker_names"] = names
		}
		out = append(out, nb)
	}
	return out
}

// sortAxes puts axes in the order their keys are written in the file.
func (x *expansion) sortAxes(mk keyPath, axes []matrixAxis) {
	rank := func(a matrixAxis) int {
		file, path, _ := x.locate(mk.key(a.name))
		if n, ok := x.sourceOf(file).order[path.String()]; ok {
			return n
		}
		return -1
	}
	slices.SortStableFunc(axes, func(a, b matrixAxis) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a.name, b.name))
	})
}

// matrixWorkers reads [builders.matrix.workers]: KEY.VALUE = [worker
// names], by key and value.
func (x *expansion) matrixWorkers(mk keyPath, axes []matrixAxis, workers map[string]any) map[string]map[string][]string {
	chosen := map[string]map[string][]string{}
	wk := mk.key("workers")
	for _, name := range slices.Sorted(maps.Keys(workers)) {
		ak := wk.key(name)
		i := slices.IndexFunc(axes, func(a matrixAxis) bool { return a.name == name })
		if i < 0 {
			x.errorAt(ak, ak, "%q is not a key of the matrix", name)
			continue
		}
		byValue, ok := workers[name].(map[string]any)
		if !ok {
			x.errorAt(ak, ak, "expected a table (VALUE = [worker names]), got %s", typeName(workers[name]))
			continue
		}
		chosen[name] = map[string][]string{}
		for _, value := range slices.Sorted(maps.Keys(byValue)) {
			vk := ak.key(value)
			if !slices.Contains(axes[i].values, value) {
				hint := ""
				if _, table := byValue[value].(map[string]any); table {
					// go.1.25 = [...]: TOML's dotted key, tables 1 and 25.
					if j := slices.IndexFunc(axes[i].values, func(v string) bool { return strings.HasPrefix(v, value+".") }); j >= 0 {
						hint = fmt.Sprintf(" (TOML reads a dotted key as nested tables: quote the value, %q = [...])", axes[i].values[j])
					}
				}
				x.errorAt(vk, vk, "%q is not a value of the matrix key %s%s", value, name, hint)
				continue
			}
			arr, ok := byValue[value].([]any)
			if !ok || len(arr) == 0 {
				x.errorAt(vk, vk, "expected a non-empty array of worker names, got %s", typeName(byValue[value]))
				continue
			}
			for j, e := range arr {
				s, ok := e.(string)
				if !ok {
					x.errorAt(vk.index(j), vk, "expected a string, got %s", typeName(e))
					continue
				}
				chosen[name][value] = append(chosen[name][value], s)
			}
		}
	}
	return chosen
}

// combinations returns every combination of the axes' values, the first
// axis varying slowest.
func combinations(axes []matrixAxis) [][]string {
	out := [][]string{nil}
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

func isKwName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// runtimeKw are the %(kw:NAME)s a step renders when it runs (hide_step_if's
// results), left alone at load time.
var runtimeKw = []string{"results"}

// substituteKw replaces %(kw:KEY)s by kw[KEY] in every string value of
// the builder b at k (not in keys). A kw that is neither a matrix key nor
// one a step renders when it runs is an error: at run time it would be
// empty. Builders without a matrix are left as they are.
func (x *expansion) substituteKw(k keyPath, b map[string]any, kw map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(b)) {
		b[name] = x.substituteValue(k.key(name), b[name], kw)
	}
}

func (x *expansion) substituteValue(k keyPath, v any, kw map[string]string) any {
	switch v := v.(type) {
	case string:
		s, err := substituteKwString(v, kw)
		if err != nil {
			x.errorAt(k, k, "%v", err)
			return v
		}
		return s
	case map[string]any:
		for _, name := range slices.Sorted(maps.Keys(v)) {
			v[name] = x.substituteValue(k.key(name), v[name], kw)
		}
	case []map[string]any:
		for i, e := range v {
			v[i] = x.substituteValue(k.index(i), e, kw).(map[string]any)
		}
	case []any:
		for i, e := range v {
			v[i] = x.substituteValue(k.index(i), e, kw)
		}
	}
	return v
}

// substituteKwString replaces each %(kw:KEY)s of s, skipping %%.
func substituteKwString(s string, kw map[string]string) (string, error) {
	if !strings.Contains(s, "%(kw:") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "%%"):
			b.WriteString("%%")
			i += 2
		case strings.HasPrefix(s[i:], "%(kw:"):
			rest := s[i+len("%(kw:"):]
			n := 0
			for n < len(rest) && (rest[n] == '_' || rest[n] >= 'a' && rest[n] <= 'z' || rest[n] >= 'A' && rest[n] <= 'Z' || rest[n] >= '0' && rest[n] <= '9') {
				n++
			}
			name := rest[:n]
			if slices.Contains(runtimeKw, name) {
				b.WriteString("%(kw:")
				i += len("%(kw:")
				continue
			}
			v, ok := kw[name]
			if !ok {
				keys := slices.Sorted(maps.Keys(kw))
				return "", fmt.Errorf("%%(kw:%s)s: not a key of the builder's matrix (%s)", name, strings.Join(keys, ", "))
			}
			if !strings.HasPrefix(rest[n:], ")s") {
				return "", fmt.Errorf("%%(kw:%s...: a matrix key is written %%(kw:%s)s, without default or condition", name, name)
			}
			b.WriteString(v)
			i += len("%(kw:") + n + len(")s")
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}
