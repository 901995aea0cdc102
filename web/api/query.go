package api

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// kind is the JSON type of a resource field, for parsing filter values.
type kind int

const (
	kindInt    kind = iota // integer or null
	kindBool               // boolean
	kindString             // string or null
	kindList               // list; only __contains filters it
	kindObject             // object; cannot be filtered or ordered
)

// resource is one of buildbot's resource types: its plural (the envelope's
// key) and its fields.
type resource struct {
	plural string
	fields map[string]kind
}

// query is buildbot's result spec: the field selection, filters, order and
// pagination of a GET. It works on the JSON objects of a resource, in memory,
// unless the list function had the store do it (see storeSliced).
type query struct {
	res     *resource
	fields  []string // nil means all
	filters []filter
	order   []orderKey
	limit   int // -1 means none
	offset  int
	// props lists the build properties asked for with property=NAME; "*"
	// means all of them.
	props []string
	// sliced is set by a list function that had the store filter, order
	// and slice its objects; total is then how many matched the filters.
	sliced bool
	total  int
}

type filter struct {
	field  string
	op     string // eq ne lt le gt ge contains in nin
	values []any
}

type orderKey struct {
	field string
	desc  bool
}

// queryError is a bad query parameter.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

func badQuery(format string, args ...any) error {
	return &queryError{msg: fmt.Sprintf(format, args...)}
}

var filterOps = map[string]bool{
	"eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true, "contains": true, "in": true,
}

// parseQuery reads buildbot's query parameters for res.
func parseQuery(v url.Values, res *resource) (*query, error) {
	q := &query{res: res, limit: -1}
	for name, vals := range v {
		switch name {
		case "field":
			for _, val := range vals {
				for f := range strings.SplitSeq(val, ",") {
					if _, ok := res.fields[f]; !ok {
						return nil, badQuery("unknown field %q in field", f)
					}
					q.fields = append(q.fields, f)
				}
			}
		case "order":
			for _, val := range vals {
				for f := range strings.SplitSeq(val, ",") {
					k := orderKey{field: f}
					if rest, ok := strings.CutPrefix(f, "-"); ok {
						k = orderKey{field: rest, desc: true}
					}
					kd, ok := res.fields[k.field]
					if !ok {
						return nil, badQuery("unknown field %q in order", k.field)
					}
					if kd == kindList || kd == kindObject {
						return nil, badQuery("cannot order by field %q", k.field)
					}
					q.order = append(q.order, k)
				}
			}
		case "limit", "offset":
			n, err := strconv.Atoi(vals[len(vals)-1])
			if err != nil || n < 0 {
				return nil, badQuery("%s must be a non-negative integer, not %q", name, vals[len(vals)-1])
			}
			if name == "limit" {
				q.limit = n
			} else {
				q.offset = n
			}
		case "property":
			q.props = append(q.props, vals...)
		default:
			f, err := parseFilter(name, vals, res)
			if err != nil {
				return nil, err
			}
			q.filters = append(q.filters, f)
		}
	}
	// Map iteration order is random: keep the order keys as given, and the
	// filters in a stable order for error messages and tests.
	slices.SortFunc(q.filters, func(a, b filter) int { return cmp.Compare(a.field+a.op, b.field+b.op) })
	return q, nil
}

func parseFilter(name string, vals []string, res *resource) (filter, error) {
	field, op := name, "eq"
	if i := strings.LastIndex(name, "__"); i > 0 {
		field, op = name[:i], name[i+2:]
		if !filterOps[op] {
			return filter{}, badQuery("unknown filter operator %q in %q", op, name)
		}
	}
	kd, ok := res.fields[field]
	if !ok {
		return filter{}, badQuery("unknown field %q in filter %q", field, name)
	}
	switch {
	case kd == kindObject:
		return filter{}, badQuery("cannot filter on field %q", field)
	case kd == kindList && op != "contains":
		return filter{}, badQuery("field %q is a list: only %s__contains filters it", field, field)
	case kd != kindList && kd != kindString && op == "contains":
		return filter{}, badQuery("%s__contains needs a string or list field", field)
	}
	f := filter{field: field, op: op}
	for _, s := range vals {
		val, err := parseValue(kd, s)
		if err != nil {
			return filter{}, badQuery("bad value %q for %s: %v", s, name, err)
		}
		f.values = append(f.values, val)
	}
	if len(f.values) > 1 {
		switch f.op {
		case "eq":
			f.op = "in"
		case "ne":
			f.op = "nin"
		case "in", "contains":
		default:
			return filter{}, badQuery("%s takes one value", name)
		}
	}
	return f, nil
}

// parseValue reads a filter value as buildbot does: "null" is null, booleans
// are true/false/1/0, integers decimal. A list field's value stays a string
// and matches an element with the same text.
func parseValue(kd kind, s string) (any, error) {
	switch kd {
	case kindInt:
		if s == "null" {
			return nil, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("not an integer")
		}
		return n, nil
	case kindBool:
		switch s {
		case "true", "1", "yes", "on":
			return true, nil
		case "false", "0", "no", "off":
			return false, nil
		case "null":
			return nil, nil
		}
		return nil, fmt.Errorf("not a boolean")
	}
	return s, nil
}

// storeSliced says that the objects a list function returns are already
// filtered, ordered and sliced as q asks, by the store, and that total
// matched the filters: apply then only selects their fields.
func (q *query) storeSliced(total int) {
	q.sliced, q.total = true, total
}

// apply filters, orders and slices objs, and returns them with the number
// that matched the filters.
func (q *query) apply(objs []map[string]any) ([]map[string]any, int) {
	if q.sliced {
		for i, o := range objs {
			objs[i] = q.project(o)
		}
		return objs, q.total
	}
	out := objs[:0:0]
	for _, o := range objs {
		if q.match(o) {
			out = append(out, o)
		}
	}
	total := len(out)
	if len(q.order) > 0 {
		slices.SortStableFunc(out, func(a, b map[string]any) int {
			for _, k := range q.order {
				c := compareValues(a[k.field], b[k.field])
				if k.desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		})
	}
	out = out[min(q.offset, len(out)):]
	if q.limit >= 0 && q.limit < len(out) {
		out = out[:q.limit]
	}
	for i, o := range out {
		out[i] = q.project(o)
	}
	return out, total
}

// project keeps the selected fields of o.
func (q *query) project(o map[string]any) map[string]any {
	if q.fields == nil {
		return o
	}
	p := make(map[string]any, len(q.fields))
	for _, f := range q.fields {
		p[f] = o[f]
	}
	return p
}

func (q *query) match(o map[string]any) bool {
	for _, f := range q.filters {
		if !f.match(o[f.field]) {
			return false
		}
	}
	return true
}

func (f filter) match(v any) bool {
	switch f.op {
	case "contains":
		for _, want := range f.values {
			if containsValue(v, want.(string)) {
				return true
			}
		}
		return false
	case "in":
		return slices.ContainsFunc(f.values, func(w any) bool { return equalValues(v, w) })
	case "nin":
		return !slices.ContainsFunc(f.values, func(w any) bool { return equalValues(v, w) })
	}
	w := f.values[0]
	switch f.op {
	case "eq":
		return equalValues(v, w)
	case "ne":
		return !equalValues(v, w)
	}
	if v == nil || w == nil {
		return false // null is not ordered against a value
	}
	c := compareValues(v, w)
	switch f.op {
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	case "gt":
		return c > 0
	default: // ge
		return c >= 0
	}
}

func equalValues(v, w any) bool {
	if s, ok := w.(string); ok && v == nil {
		return s == "null"
	}
	return compareValues(v, w) == 0 && (v == nil) == (w == nil)
}

func containsValue(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, s)
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return fmt.Sprint(e) == s })
	}
	return false
}

// compareValues orders two field values: null first, then by value. Values
// of different types order by type, which only happens for bad data.
func compareValues(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch a := a.(type) {
	case int64:
		return cmp.Compare(a, b.(int64))
	case bool:
		bb := b.(bool)
		switch {
		case a == bb:
			return 0
		case !a:
			return -1
		}
		return 1
	case string:
		return strings.Compare(a, b.(string))
	}
	return 0
}

func rank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case int64:
		return 2
	case string:
		return 3
	}
	return 4
}
