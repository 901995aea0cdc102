package pb

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
)

// maxNodes bounds the values one jellied expression may stand for,
// counting a dereference as a copy of all it refers to: a chain of
// references, each a list holding the one before twice, stands for 2^D
// values in a few bytes, and whatever later walks the value (plain, a
// log line, a store) would pay for each. Twice banana's item limit: a
// message without references never comes near it.
const maxNodes = 2 * maxExprItem

// maxValueBytes bounds the string bytes one jellied expression stands
// for, a dereference counting the bytes of all it refers to: a 600 KB
// string in a list referenced a thousand times is 600 MB to whatever
// walks the value. Twice banana's expression limit.
const maxValueBytes = 2 * maxExprSize

// maxFailureText bounds the text of a failure the worker sent.
const maxFailureText = 8 << 10

// errTooManyNodes is returned for an expression that stands for more
// than maxNodes values.
var errTooManyNodes = fmt.Errorf("%w: jelly expression stands for more than %d values or %d bytes", ErrBanana, maxNodes, maxValueBytes)

// tuple is a Go slice sent as a Python tuple (jelly's "tuple").
type tuple []any

// remoteRef is a worker object the master may call (a RemoteReference
// in Twisted): the mind, a worker-for-builder. luid is the worker's id.
type remoteRef struct{ luid int64 }

// instance is an object of a class jelly sends by name with its state
// (a failure, mostly), or a type this package has no Go value for.
type instance struct {
	class string
	state any
}

// failureText is the text of a failure the worker sent (a CopiedFailure's
// type and value), or of any other value it sent as one, as fmt.Sprint
// of its plain value would give it but cut at maxFailureText bytes: it
// is written through a bounded writer, never made whole, since a value
// sharing one list many times stands for far more text than it holds.
func failureText(v any) string {
	w := &limitedText{}
	in, ok := v.(*instance)
	st, isMap := map[string]any(nil), false
	if ok {
		st, isMap = in.state.(map[string]any)
	}
	switch {
	case !ok:
		w.value(v)
	case !isMap:
		w.str(in.class)
		w.str(": ")
		w.value(in.state)
	default:
		typ, _ := st["type"].(string)
		if typ == "" {
			typ = in.class
		}
		w.str(typ)
		w.str(": ")
		w.value(st["value"])
	}
	return w.String()
}

// limitedText formats values as fmt.Sprint formats their plain values,
// keeping the first maxFailureText bytes and then "…"; past those it
// does nothing more.
type limitedText struct {
	buf  []byte
	full bool
}

func (w *limitedText) String() string {
	if w.full {
		return string(w.buf) + "…"
	}
	return string(w.buf)
}

func (w *limitedText) str(s string) {
	if w.full {
		return
	}
	if room := maxFailureText - len(w.buf); len(s) > room {
		w.buf = append(w.buf, s[:room]...)
		w.full = true
		return
	}
	w.buf = append(w.buf, s...)
}

func (w *limitedText) value(v any) {
	if w.full {
		return
	}
	switch x := v.(type) {
	case string:
		w.str(x)
	case []any:
		w.str("[")
		for i, e := range x {
			if w.full {
				return
			}
			if i > 0 {
				w.str(" ")
			}
			w.value(e)
		}
		w.str("]")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.str("map[")
		for i, k := range keys {
			if w.full {
				return
			}
			if i > 0 {
				w.str(" ")
			}
			w.str(k)
			w.str(":")
			w.value(x[k])
		}
		w.str("]")
	case *remoteRef, *instance, local:
		w.str(plain(v).(string))
	default:
		// Numbers, booleans, nil: short.
		w.str(fmt.Sprint(x))
	}
}

// failure is what the master sends as an error: a
// twisted.spread.pb.CopyableFailure's state, which the worker unjellies
// as a CopiedFailure. parents are the exception's classes (qualified
// names) that Failure.check matches, most specific first.
func failure(parents []string, message string) *instance {
	ps := make([]any, 0, len(parents)+3)
	for _, p := range parents {
		ps = append(ps, p)
	}
	ps = append(ps, "builtins.Exception", "builtins.BaseException", "builtins.object")
	return &instance{class: "twisted.spread.pb.CopyableFailure", state: map[string]any{
		"type":        []byte(parents[0]),
		"value":       message,
		"traceback":   "Traceback unavailable\n",
		"parents":     ps,
		"frames":      []any{},
		"stack":       []any{},
		"tb":          nil,
		"count":       int64(0),
		"captureVars": false,
		"pickled":     int64(0),
	}}
}

// plain turns what unjelly gives into the plain values bbworker.Conn
// promises: references and instances become descriptive strings. A list
// or dictionary the value holds several times (a jelly reference) is
// turned once and shared, as unjelly shares it.
func plain(v any) any { return plainer{}.plain(v) }

// plainer remembers the lists and dictionaries it has turned, by identity.
type plainer map[plainKey]any

type plainKey struct {
	p     uintptr
	n     int
	isMap bool
}

func (seen plainer) plain(v any) any {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			return []any{}
		}
		k := plainKey{p: reflect.ValueOf(x).Pointer(), n: len(x)}
		if out, ok := seen[k]; ok {
			return out
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = seen.plain(e)
		}
		seen[k] = out
		return out
	case map[string]any:
		k := plainKey{p: reflect.ValueOf(x).Pointer(), isMap: true}
		if out, ok := seen[k]; ok {
			return out
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = seen.plain(e)
		}
		seen[k] = out
		return out
	case *remoteRef:
		return fmt.Sprintf("<remote reference %d>", x.luid)
	case *instance:
		return fmt.Sprintf("<%s>", x.class)
	case local:
		return "<local object>"
	default:
		return v
	}
}

// unjellier turns one jellied expression (one message's args, kwargs or
// result) into Go values: strings and bytes become string, lists, tuples
// and sets []any, dictionaries map[string]any, None nil, booleans bool;
// "remote" a *remoteRef, "local" the local object, any class instance an
// *instance. Depth and size are bounded by the banana decoder already; a
// dereference hands back the value it names, shared, not copied, and
// counts as all the values it stands for (at most maxNodes).
type unjellier struct {
	refs   map[int64]any
	locals func(id any) (local, bool)
	nodes  int               // values the expression stands for so far
	bytes  int               // string bytes it stands for so far
	sizes  map[int64]refSize // what each reference stands for
}

// refSize is what a reference stands for.
type refSize struct{ nodes, bytes int }

// count adds n values to the expression's count.
func (u *unjellier) count(n int) error {
	u.nodes += n
	if u.nodes > maxNodes {
		return errTooManyNodes
	}
	return nil
}

// countBytes adds n string bytes to the expression's count.
func (u *unjellier) countBytes(n int) error {
	u.bytes += n
	if u.bytes > maxValueBytes {
		return errTooManyNodes
	}
	return nil
}

func (u *unjellier) unjelly(v any) (any, error) {
	if err := u.count(1); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case []byte:
		if err := u.countBytes(len(x)); err != nil {
			return nil, err
		}
		return string(x), nil
	case int64, float64:
		return x, nil
	case []any:
		return u.list(x)
	default:
		return nil, fmt.Errorf("pb: cannot unjelly %T", v)
	}
}

func (u *unjellier) list(x []any) (any, error) {
	if len(x) == 0 {
		return nil, fmt.Errorf("pb: empty jelly list")
	}
	head, ok := x[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("pb: jelly list headed by %T", x[0])
	}
	rest := x[1:]
	switch atom := string(head); atom {
	case "None":
		return nil, nil
	case "unicode":
		if len(rest) != 1 {
			return nil, fmt.Errorf("pb: unicode of %d items", len(rest))
		}
		s, ok := rest[0].([]byte)
		if !ok {
			return nil, fmt.Errorf("pb: unicode of %T", rest[0])
		}
		if err := u.countBytes(len(s)); err != nil {
			return nil, err
		}
		return string(s), nil
	case "boolean":
		if len(rest) != 1 {
			return nil, fmt.Errorf("pb: boolean of %d items", len(rest))
		}
		s, _ := rest[0].([]byte)
		switch string(s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("pb: boolean %q", s)
	case "list", "tuple", "set", "frozenset":
		out := make([]any, 0, len(rest))
		for _, e := range rest {
			v, err := u.unjelly(e)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "dictionary":
		out := make(map[string]any, len(rest))
		for _, e := range rest {
			kv, ok := e.([]any)
			if !ok || len(kv) != 2 {
				return nil, fmt.Errorf("pb: dictionary item is not a pair")
			}
			k, err := u.unjelly(kv[0])
			if err != nil {
				return nil, err
			}
			v, err := u.unjelly(kv[1])
			if err != nil {
				return nil, err
			}
			var ks string
			switch k := k.(type) {
			case string:
				ks = k
			case int64, float64, bool, nil:
				ks = fmt.Sprint(k)
			default:
				// Buildbot's dictionaries are keyed by names; a
				// list or object as a key is nothing it sends.
				return nil, fmt.Errorf("pb: dictionary key is a %T", k)
			}
			out[ks] = v
		}
		return out, nil
	case "reference":
		if len(rest) != 2 {
			return nil, fmt.Errorf("pb: reference of %d items", len(rest))
		}
		id, ok := rest[0].(int64)
		if !ok {
			return nil, fmt.Errorf("pb: reference id %T", rest[0])
		}
		before, beforeBytes := u.nodes, u.bytes
		v, err := u.unjelly(rest[1])
		if err != nil {
			return nil, err
		}
		if u.refs == nil {
			u.refs = make(map[int64]any)
			u.sizes = make(map[int64]refSize)
		}
		u.refs[id] = v
		u.sizes[id] = refSize{nodes: u.nodes - before, bytes: u.bytes - beforeBytes}
		return v, nil
	case "dereference":
		if len(rest) != 1 {
			return nil, fmt.Errorf("pb: dereference of %d items", len(rest))
		}
		id, _ := rest[0].(int64)
		v, ok := u.refs[id]
		if !ok {
			// A cycle, or a reference never made: neither is a value
			// buildbot sends.
			return nil, fmt.Errorf("pb: dereference of unknown or unfinished %d", id)
		}
		if err := u.count(u.sizes[id].nodes); err != nil {
			return nil, err
		}
		if err := u.countBytes(u.sizes[id].bytes); err != nil {
			return nil, err
		}
		return v, nil
	case "remote":
		if len(rest) != 1 {
			return nil, fmt.Errorf("pb: remote of %d items", len(rest))
		}
		id, ok := rest[0].(int64)
		if !ok {
			return nil, fmt.Errorf("pb: remote id %T", rest[0])
		}
		return &remoteRef{luid: id}, nil
	case "local":
		if len(rest) != 1 {
			return nil, fmt.Errorf("pb: local of %d items", len(rest))
		}
		id := rest[0]
		if b, ok := id.([]byte); ok {
			id = string(b)
		}
		if u.locals != nil {
			if l, ok := u.locals(id); ok {
				return l, nil
			}
		}
		return nil, fmt.Errorf("pb: local reference to unknown object %v", id)
	default:
		// An instance: [class, state] (Copyable, Failure), or a type
		// (datetime, decimal, unpersistable) kept as its parts.
		in := &instance{class: atom}
		if len(rest) == 1 {
			s, err := u.unjelly(rest[0])
			if errors.Is(err, errTooManyNodes) {
				return nil, err
			}
			if err == nil {
				in.state = s
			}
		}
		return in, nil
	}
}

// jelly turns a Go value the master sends into its jellied form; reg
// registers a local object and returns its id.
func jelly(v any, reg func(local) (int64, error)) (any, error) {
	switch x := v.(type) {
	case nil:
		return []any{"None"}, nil
	case bool:
		if x {
			return []any{"boolean", "true"}, nil
		}
		return []any{"boolean", "false"}, nil
	case string:
		return []any{"unicode", []byte(x)}, nil
	case []byte:
		return x, nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case float64:
		return x, nil
	case tuple:
		return jellySeq("tuple", x, reg)
	case []any:
		return jellySeq("list", x, reg)
	case []string:
		out := []any{"list"}
		for _, s := range x {
			out = append(out, []any{"unicode", []byte(s)})
		}
		return out, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := []any{"dictionary"}
		for _, k := range keys {
			v, err := jelly(x[k], reg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out = append(out, []any{[]any{"unicode", []byte(k)}, v})
		}
		return out, nil
	case *remoteRef:
		return []any{"local", x.luid}, nil
	case *instance:
		st, err := jelly(x.state, reg)
		if err != nil {
			return nil, err
		}
		return []any{x.class, st}, nil
	case local:
		id, err := reg(x)
		if err != nil {
			return nil, err
		}
		return []any{"remote", id}, nil
	default:
		return nil, fmt.Errorf("pb: cannot send a %T", v)
	}
}

func jellySeq(atom string, x []any, reg func(local) (int64, error)) (any, error) {
	out := make([]any, 0, len(x)+1)
	out = append(out, atom)
	for i, e := range x {
		v, err := jelly(e, reg)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}
