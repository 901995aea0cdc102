package pb

import (
	"fmt"
	"slices"
)

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
// type and value), or of any other value it sent as one.
func failureText(v any) string {
	in, ok := v.(*instance)
	if !ok {
		return fmt.Sprint(plain(v))
	}
	st, ok := in.state.(map[string]any)
	if !ok {
		return fmt.Sprintf("%s: %v", in.class, plain(in.state))
	}
	typ, _ := st["type"].(string)
	val := fmt.Sprint(plain(st["value"]))
	if typ == "" {
		typ = in.class
	}
	return typ + ": " + val
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
// promises: references and instances become descriptive strings.
func plain(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plain(e)
		}
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
// *instance. Depth and size are bounded by the banana decoder already.
type unjellier struct {
	refs   map[int64]any
	locals func(id any) (local, bool)
}

func (u *unjellier) unjelly(v any) (any, error) {
	switch x := v.(type) {
	case []byte:
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
			ks, ok := k.(string)
			if !ok {
				ks = fmt.Sprint(plain(k))
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
		v, err := u.unjelly(rest[1])
		if err != nil {
			return nil, err
		}
		if u.refs == nil {
			u.refs = make(map[int64]any)
		}
		u.refs[id] = v
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
			if s, err := u.unjelly(rest[0]); err == nil {
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
