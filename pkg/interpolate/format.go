package interpolate

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// str formats v as Python's str(v) would the value TOML or JSON gave it.
// Maps are written with their keys sorted, Go maps having no order.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Time:
		return repr(v)
	case fmt.Stringer:
		return v.String()
	}
	return repr(v)
}

// repr formats v as Python's repr(v).
func repr(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case string:
		return reprString(v)
	case bool:
		if v {
			return "True"
		}
		return "False"
	case float64:
		return reprFloat(v)
	case float32:
		return reprFloat(float64(v))
	case time.Time:
		// Python's str(datetime): "2006-01-02 15:04:05[.ffffff]+07:00".
		s := v.Format("2006-01-02 15:04:05")
		if us := v.Nanosecond() / 1000; us != 0 {
			s += fmt.Sprintf(".%06d", us)
		}
		return s + v.Format("-07:00")
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.String:
		return reprString(rv.String())
	case reflect.Bool:
		return repr(rv.Bool())
	case reflect.Float32, reflect.Float64:
		return reprFloat(rv.Float())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return "[]"
		}
		elems := make([]string, rv.Len())
		for i := range elems {
			elems[i] = repr(rv.Index(i).Interface())
		}
		return "[" + strings.Join(elems, ", ") + "]"
	case reflect.Map:
		type kv struct{ k, v string }
		var items []kv
		for it := rv.MapRange(); it.Next(); {
			items = append(items, kv{repr(it.Key().Interface()), repr(it.Value().Interface())})
		}
		slices.SortFunc(items, func(a, b kv) int { return strings.Compare(a.k, b.k) })
		elems := make([]string, len(items))
		for i, e := range items {
			elems[i] = e.k + ": " + e.v
		}
		return "{" + strings.Join(elems, ", ") + "}"
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return "None"
		}
		return repr(rv.Elem().Interface())
	}
	return fmt.Sprint(v)
}

// reprFloat formats f as Python's repr(f): the shortest digits that read
// back as f, in fixed notation from 1e-4 up to 1e16 (with at least ".0"),
// else in exponent notation with at least two exponent digits.
func reprFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e // Go writes "1e+16" and "1.5e-07" as Python
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// reprString quotes s as Python's repr: in single quotes unless s holds a
// single quote and no double quote.
func reprString(s string) string {
	q := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x100 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r != ' ':
			if r < 0x10000 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// truthy reports whether Python regards v as true: everything but None,
// False, zero numbers and empty strings, lists and maps.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case bool:
		return v
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() != 0
	case reflect.Float32, reflect.Float64:
		return rv.Float() != 0
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() != 0
	case reflect.Bool:
		return rv.Bool()
	case reflect.Pointer, reflect.Interface:
		return !rv.IsNil()
	}
	return true
}
