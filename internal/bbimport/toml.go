package bbimport

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// untranslatable is a value, or a part of one, with no TOML form: why says
// what it is.
type untranslatable struct{ why string }

func (u *untranslatable) Error() string { return u.why }

// value turns a value of the loader's JSON into a TOML value (string,
// int64, float64, bool, []any, map[string]any), or says why it cannot.
func value(v any) (any, error) { return valueOf(v, false) }

// renderedValue is value for a key gbb renders (every string of a step, a
// reporter's rendered keys): a plain string's % is written %%, as buildbot
// renders only Interpolate's, and an Interpolate's string must be one gbb
// can render.
func renderedValue(v any) (any, error) { return valueOf(v, true) }

func valueOf(v any, render bool) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, &untranslatable{"None"}
	case string:
		if render {
			return strings.ReplaceAll(v, "%", "%%"), nil
		}
		return v, nil
	case bool:
		return v, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, &untranslatable{fmt.Sprintf("number %s", v)}
		}
		return f, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := valueOf(e, render)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		switch v["$gbb"] {
		case nil:
		case "interp":
			s, _ := v["s"].(string)
			if render {
				if _, err := interpolate.Parse(s); err != nil {
					return nil, &untranslatable{fmt.Sprintf("%q: gbb cannot render it: %v", s, err)}
				}
			}
			return s, nil
		case "untranslatable":
			return nil, &untranslatable{v["why"].(string)}
		default:
			return nil, &untranslatable{describe(v)}
		}
		out := map[string]any{}
		for k, e := range v {
			x, err := valueOf(e, render)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	}
	return nil, &untranslatable{fmt.Sprintf("%T", v)}
}

// describe names a marked value of the loader's JSON for a comment.
func describe(v map[string]any) string {
	switch v["$gbb"] {
	case "untranslatable":
		return v["why"].(string)
	case "object", "param":
		return fmt.Sprintf("a %v object", v["class"])
	case "lock":
		return fmt.Sprintf("lock %v", v["name"])
	case "filter":
		return "a ChangeFilter"
	}
	return fmt.Sprint(v)
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// key writes a TOML key, quoted when it is not bare.
func key(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return quote(k)
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// octal is an integer written in octal (a file mode).
type octal int64

// format writes a TOML value as value returns them: tables inline, their
// keys sorted.
func format(v any) string {
	switch v := v.(type) {
	case string:
		return quote(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case octal:
		return "0o" + strconv.FormatInt(int64(v), 8)
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0"
		}
		return s
	case bool:
		return strconv.FormatBool(v)
	case []string:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = quote(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = format(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		if len(v) == 0 {
			return "{}"
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, key(k)+" = "+format(v[k]))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	case map[string]string:
		m := map[string]any{}
		for k, e := range v {
			m[k] = e
		}
		return format(m)
	}
	panic(fmt.Sprintf("bbimport: no TOML form for %T", v))
}
