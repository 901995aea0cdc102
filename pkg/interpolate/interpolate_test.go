package interpolate

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testContext has properties, source stamps, secrets, keywords and worker
// info, with true, false and nil values of each kind.
func testContext() Context {
	props := map[string]any{
		"branch":    "main",
		"empty":     "",
		"none":      nil,
		"yes":       true,
		"no":        false,
		"zero":      int64(0),
		"n":         int64(42),
		"neg":       int64(-7),
		"f":         1.5,
		"fint":      2.0,
		"fbig":      1e16,
		"fsmall":    1e-5,
		"list":      []any{"a", int64(1), true, nil, 2.5},
		"emptylist": []any{},
		"map":       map[string]any{"b": int64(2), "a": "x"},
		"strfalse":  "False",
		"quote":     "it's",
		"got.rev-1": "abc",
		"pct":       "100%",
	}
	src := map[[2]string]string{
		{"", "branch"}:       "dev",
		{"", "revision"}:     "abc123",
		{"lib", "revision"}:  "def456",
		{"lib", "branch"}:    "",
		{"", "repository"}:   "https://example.org/r.git",
		{"", "project"}:      "proj",
		{"lib", "codebase"}:  "lib",
		{"lib", "project"}:   "",
		{"", "codebase"}:     "",
		{"other", "project"}: "p",
	}
	secrets := map[string]string{"token": "s3cr3t", "pw": "hunter2", "blank": ""}
	worker := map[string]string{"os": "freebsd", "arch": ""}
	return Context{
		Property: func(name string) (any, bool) { v, ok := props[name]; return v, ok },
		Source:   func(cb, attr string) (string, bool) { v, ok := src[[2]string{cb, attr}]; return v, ok },
		Secret: func(name string) (string, error) {
			v, ok := secrets[name]
			if !ok {
				return "", errors.New("not found in any provider")
			}
			return v, nil
		},
		Keyword: map[string]any{"data": "extra", "count": int64(3), "off": false},
		Worker:  func(name string) (string, bool) { v, ok := worker[name]; return v, ok },
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		secrets []string
	}{
		// Constants and escapes.
		{in: "", want: ""},
		{in: "make all", want: "make all"},
		{in: "100%%", want: "100%"},
		{in: "%%(prop:branch)s", want: "%(prop:branch)s"},
		{in: "%%%(prop:branch)s%%", want: "%main%"},
		{in: "héllo %(prop:branch)s ✓", want: "héllo main ✓"},

		// Selectors.
		{in: "%(prop:branch)s", want: "main"},
		{in: "b=%(prop:branch)s n=%(prop:n)s", want: "b=main n=42"},
		{in: "%(prop:got.rev-1)s", want: "abc"},
		{in: "%(prop:missing)s", want: ""},
		{in: "%(prop:pct)s", want: "100%"}, // values are not interpolated again
		{in: "%(src::revision)s", want: "abc123"},
		{in: "%(src:lib:revision)s", want: "def456"},
		{in: "%(src::repository)s %(src::project)s %(src:lib:codebase)s", want: "https://example.org/r.git proj lib"},
		{in: "%(src:nope:revision)s", want: ""},
		{in: "%(secret:token)s", want: "s3cr3t", secrets: []string{"s3cr3t"}},
		{in: "%(secret:token)s:%(secret:pw)s:%(secret:token)s", want: "s3cr3t:hunter2:s3cr3t", secrets: []string{"s3cr3t", "hunter2"}},
		{in: "[%(secret:blank)s]", want: "[]"},
		{in: "%(kw:data)s %(kw:count)s", want: "extra 3"},
		{in: "%(kw:missing)s", want: ""},
		{in: "%(worker:os)s", want: "freebsd"},
		{in: "%(worker:missing)s", want: ""},

		// Values formatted as Python's str.
		{in: "%(prop:yes)s %(prop:no)s", want: "True False"},
		{in: "%(prop:none)s", want: ""}, // buildbot's elideNoneAs
		{in: "%(prop:zero)s %(prop:neg)s", want: "0 -7"},
		{in: "%(prop:f)s %(prop:fint)s %(prop:fbig)s %(prop:fsmall)s", want: "1.5 2.0 1e+16 1e-05"},
		{in: "%(prop:list)s", want: "['a', 1, True, None, 2.5]"},
		{in: "%(prop:emptylist)s", want: "[]"},
		{in: "%(prop:map)s", want: "{'a': 'x', 'b': 2}"},

		// :- default, when unset.
		{in: "%(prop:missing:-dflt)s", want: "dflt"},
		{in: "%(prop:missing:-)s", want: ""},
		{in: "%(prop:branch:-dflt)s", want: "main"},
		{in: "%(prop:empty:-dflt)s", want: ""},
		{in: "%(prop:no:-dflt)s", want: "False"},
		{in: "%(prop:none:-dflt)s", want: ""},
		{in: "%(src:lib:branch:-x)s %(src:lib:project:-x)s %(src:lib:repository:-x)s", want: "  x"},
		{in: "%(kw:missing:-none given)s", want: "none given"},
		{in: "%(worker:arch:-x)s|%(worker:cpu:-x)s", want: "|x"},
		{in: "%(prop:missing:-a:b:c)s", want: "a:b:c"},

		// :~ default, when unset or false.
		{in: "%(prop:missing:~dflt)s", want: "dflt"},
		{in: "%(prop:empty:~dflt)s", want: "dflt"},
		{in: "%(prop:no:~dflt)s", want: "dflt"},
		{in: "%(prop:zero:~dflt)s", want: "dflt"},
		{in: "%(prop:none:~dflt)s", want: "dflt"},
		{in: "%(prop:emptylist:~dflt)s", want: "dflt"},
		{in: "%(prop:strfalse:~dflt)s", want: "False"},
		{in: "%(prop:yes:~dflt)s", want: "True"},
		{in: "%(kw:off:~on)s", want: "on"},
		{in: "%(worker:arch:~any)s", want: "any"},
		{in: "%(secret:blank:~nothing)s", want: "nothing"},

		// :+ alternative, when set.
		{in: "%(prop:branch:+set)s", want: "set"},
		{in: "%(prop:empty:+set)s", want: "set"},
		{in: "%(prop:none:+set)s", want: "set"},
		{in: "%(prop:missing:+set)s", want: ""},
		{in: "%(secret:unknown:+set)s", want: "set"}, // every secret is set; its value is not needed

		// :? and :#? ternaries.
		{in: "%(prop:branch:?|yes|no)s", want: "yes"},
		{in: "%(prop:empty:?|yes|no)s", want: "yes"},
		{in: "%(prop:missing:?|yes|no)s", want: "no"},
		{in: "%(prop:branch:#?|yes|no)s", want: "yes"},
		{in: "%(prop:empty:#?|yes|no)s", want: "no"},
		{in: "%(prop:no:#?|yes|no)s", want: "no"},
		{in: "%(prop:missing:#?|yes|no)s", want: "no"},
		{in: "%(prop:strfalse:#?|yes|no)s", want: "yes"},
		{in: "%(prop:branch:?/a|b/c)s", want: "a|b"},
		{in: "%(prop:missing:?/a|b/c)s", want: "c"},
		{in: "%(prop:missing:?|a|b|c)s", want: "b|c"}, // as buildbot: the rest after the second delimiter
		{in: "%(prop:branch:?||no)s", want: ""},
		{in: "%(prop:missing:?|yes|)s", want: ""},
		{in: "%(prop:branch:?|(a|b)|c)s", want: "(a|b)"}, // a delimiter in parentheses does not count
		{in: "%(prop:missing:?|(a|b)|c)s", want: "c"},
		{in: "%(prop:branch:?éyesénoé)s", want: "yes"},
		{in: "%(prop:missing:?éyesénoé)s", want: "noé"},
		{in: "%(secret:token:#?|on|off)s", want: "on", secrets: []string{"s3cr3t"}},

		// Nesting.
		{in: "%(prop:missing:-%(prop:branch)s)s", want: "main"},
		{in: "%(prop:got_revision:-%(src::revision:-unknown)s)s", want: "abc123"},
		{in: "%(prop:got_revision:-%(src:nope:revision:-unknown)s)s", want: "unknown"},
		{in: "%(prop:missing:-%(prop:missing:-%(prop:missing:-deep)s)s)s", want: "deep"},
		{in: "%(prop:branch:?|on %(prop:branch)s|%(prop:n)s)s", want: "on main"},
		{in: "%(prop:missing:?|on %(prop:branch)s|%(prop:n:?|x|y)s)s", want: "x"},
		{in: "%(prop:missing:-50%%)s", want: "50%"},
		{in: "%(prop:missing:-(a))s", want: "(a)"},
		{in: "%(prop:branch:+%(secret:pw)s)s", want: "hunter2", secrets: []string{"hunter2"}},
		{in: "%(prop:missing:+%(secret:pw)s)s", want: ""},
	}
	c := testContext()
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, secrets, err := Render(tt.in, c)
			if err != nil {
				t.Fatalf("Render(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Render(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if diff := cmp.Diff(tt.secrets, secrets); diff != "" {
				t.Errorf("Render(%q) secrets (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRenderNilContext(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"%(prop:branch:-a)s", "a"},
		{"%(src::revision:-b)s", "b"},
		{"%(kw:data:-c)s", "c"},
		{"%(worker:os:-d)s", "d"},
		{"%(prop:branch:?|y|n)s", "n"},
		{"%(secret:x:+set)s", "set"},
		{"100%%", "100%"},
	}
	for _, tt := range tests {
		got, _, err := Render(tt.in, Context{})
		if err != nil || got != tt.want {
			t.Errorf("Render(%q, Context{}) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		c    Context
		want string
	}{
		{"%(secret:nope)s", testContext(), `secret "nope": not found in any provider`},
		{"a %(prop:branch)s %(secret:nope:-x)s", testContext(), `secret "nope": not found in any provider`},
		{"%(prop:missing:-%(secret:nope)s)s", testContext(), `secret "nope": not found in any provider`},
		{"%(secret:token)s", Context{}, `secret "token": no secrets provider`},
	}
	for _, tt := range tests {
		got, secrets, err := Render(tt.in, tt.c)
		if err == nil || err.Error() != tt.want || got != "" || secrets != nil {
			t.Errorf("Render(%q) = %q, %q, %v; want an error %q", tt.in, got, secrets, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"100%", `column 4: "%" at the end: write "%%" for a literal %`},
		{"50% off", `column 3: "%" followed by ' ': want "%(" or "%%" (for a literal %)`},
		{"%s", `column 1: "%" followed by 's': want "%(" or "%%" (for a literal %)`},
		{"%(prop:branch", `column 1: unterminated "%(": no matching ")"`},
		{"ab %(prop:x:-%(prop:y)s", `column 4: unterminated "%(": no matching ")"`},
		{"%(prop:branch)", `column 15: missing "s" after "%(prop:branch)": got the end`},
		{"%(prop:branch)d", `column 15: missing "s" after "%(prop:branch)": got 'd'`},
		{"é%(prop:branch) x", `column 16: missing "s" after "%(prop:branch)": got ' '`},
		{"%(branch)s", `column 3: "branch" has no selector: want prop:, src:, secret:, kw: or worker: before the name`},
		{"%(property:branch)s", `column 3: unknown selector "property": want prop, src, secret, kw or worker`},
		{"%(:branch)s", `column 3: unknown selector "": want prop, src, secret, kw or worker`},
		{"%(prop:)s", `column 8: empty property name`},
		{"%(secret:)s", `column 10: empty secret name`},
		{"%(kw::-x)s", `column 6: empty keyword name`},
		{"%(worker:)s", `column 10: empty worker info name`},
		{"%(prop:a b)s", `column 8: property name "a b" must be letters, digits, _, . or -`},
		{"%(kw:a/b)s", `column 6: keyword name "a/b" must be letters, digits, _, . or -`},
		{"%(src:revision)s", `column 3: "src:revision" needs a codebase and an attribute: %(src:CODEBASE:ATTR)s, CODEBASE often empty as in %(src::revision)s`},
		{"%(src::rev)s", `column 8: unknown source stamp attribute "rev": want branch, revision, repository, project, codebase`},
		{"%(src:a b:revision)s", `column 7: codebase "a b" must be letters, digits, _, . or -`},
		{"%(prop:x:)s", `column 9: ":" at the end: want ":-", ":~", ":+", ":?" or ":#?" after the name`},
		{"%(prop:x:=y)s", `column 10: unknown operator ":=": want ":-", ":~", ":+", ":?" or ":#?"`},
		{"%(prop:x:#y)s", `column 10: ":#" must be followed by "?": ":#?|YES|NO"`},
		{"%(prop:x:?)s", `column 11: ":?" needs a delimiter and two alternatives, as in ":?|YES|NO"`},
		{"%(prop:x:#?)s", `column 12: ":#?" needs a delimiter and two alternatives, as in ":#?|YES|NO"`},
		{"%(prop:x:?|yes)s", `column 11: ":?|yes" has no second '|': want :?|YES|NO`},
		{"%(prop:x:?(a)b(c))s", `column 11: "(" cannot be the delimiter of ":?"`},
		{"%(secret:a(:?|b)|c)s", `column 16: unbalanced ")" in ":?|b)|c"`},
		{"%(prop:x:?|(a|b))s", `column 11: ":?|(a|b)" has no second '|': want :?|YES|NO`},
		// Errors inside defaults and alternatives, at their column.
		{"%(prop:x:-50%)s", `column 13: "%" at the end: write "%%" for a literal %`},
		{"%(prop:x:-%(nope:y)s)s", `column 13: unknown selector "nope": want prop, src, secret, kw or worker`},
		{"%(prop:x:?|%(prop:y)|n)s", `column 21: missing "s" after "%(prop:y)": got the end`},
		{"%(prop:x:?|y|%(prop:)s)s", `column 21: empty property name`},
		{"%(prop:x:-a))s", `column 13: missing "s" after "%(prop:x:-a)": got ')'`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", tt.in, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q):\n got %s\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		constant bool
	}{
		{"", true},
		{"make", true},
		{"100%%", true},
		{"%(prop:x)s", false},
		{"a %(prop:x:-%(kw:y)s)s b", false},
	}
	for _, tt := range tests {
		tmpl, err := Parse(tt.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		if tmpl.String() != tt.in || tmpl.IsConstant() != tt.constant {
			t.Errorf("Parse(%q): String() = %q, IsConstant() = %v; want %v", tt.in, tmpl.String(), tmpl.IsConstant(), tt.constant)
		}
	}
}

func TestStr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    any
		want string
	}{
		{nil, "None"},
		{"s", "s"},
		{true, "True"},
		{false, "False"},
		{int64(-3), "-3"},
		{3, "3"},
		{uint8(7), "7"},
		{0.0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{0.1, "0.1"},
		{1.0 / 3, "0.3333333333333333"},
		{100.0, "100.0"},
		{1e15, "1000000000000000.0"},
		{1e16, "1e+16"},
		{1.5e300, "1.5e+300"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{1.5e-7, "1.5e-07"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{math.NaN(), "nan"},
		{float32(0.5), "0.5"},
		{[]any{}, "[]"},
		{[]string{"a", "b"}, "['a', 'b']"},
		{[]any{"it's", `say "hi"`, `both ' "`, "a\\b\n\t\x01", nil, []any{int64(1)}}, `["it's", 'say "hi"', 'both \' "', 'a\\b\n\t\x01', None, [1]]`},
		{map[string]any{"z": []any{}, "a": map[string]any{}}, "{'a': {}, 'z': []}"},
		{map[string]string{"k": "v"}, "{'k': 'v'}"},
		{[]any{"\u00a0é"}, `['\xa0é']`},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), "2024-01-02 03:04:05+00:00"},
		{time.Date(2024, 1, 2, 3, 4, 5, 120000000, time.FixedZone("", 3600)), "2024-01-02 03:04:05.120000+01:00"},
	}
	for _, tt := range tests {
		if got := str(tt.v); got != tt.want {
			t.Errorf("str(%#v) = %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestTruthy(t *testing.T) {
	t.Parallel()
	for _, v := range []any{nil, false, "", int64(0), 0, 0.0, []any{}, map[string]any{}, []string(nil)} {
		if truthy(v) {
			t.Errorf("truthy(%#v) = true, want false", v)
		}
	}
	for _, v := range []any{true, "x", "False", "0", int64(-1), 0.5, []any{nil}, map[string]any{"": nil}} {
		if !truthy(v) {
			t.Errorf("truthy(%#v) = false, want true", v)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "plain", "100%%", "%(prop:x)s", "%(src::revision)s", "%(secret:t:+y)s",
		"%(prop:a:-%(prop:b:?|x|y)s)s", "%(prop:a:#?|(x|y)|z)s", "%(prop:a:~)s", "%(", "%(prop:x)", "%(prop:x:?|a)s",
		"%(kw:a:?é1é2)s", "%(prop:x:-a))s", "%(kw:0:?\xa4\xa90)s",
	} {
		f.Add(s)
	}
	c := testContext()
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "column ") {
				t.Errorf("Parse(%q): error %q has no column", s, err)
			}
			return
		}
		if tmpl.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, tmpl.String())
		}
		out, _, err := tmpl.Render(c)
		if err != nil && !strings.HasPrefix(err.Error(), "secret ") {
			t.Errorf("Render(%q): %v", s, err)
		}
		if tmpl.IsConstant() && out != strings.ReplaceAll(s, "%%", "%") {
			t.Errorf("constant %q rendered as %q", s, out)
		}
	})
}
