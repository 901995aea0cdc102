package interpolate

import (
	"errors"
	"testing"
)

func TestCondition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cond string
		want bool
	}{
		// An operand alone.
		{"%(prop:branch)s", true},
		{"%(prop:empty)s", false},
		{"%(prop:missing)s", false},
		{"%(prop:yes)s", true},
		{"%(prop:no)s", false},
		{"%(prop:strfalse)s", false},
		{"%(prop:zero)s", false},
		{"%(prop:none)s", false},
		{"%(prop:n)s", true},
		{"true", true},
		{"false", false},
		{"False", false},
		{"None", false},
		{"0", false},
		{"00", true},
		{`""`, false},
		{"' '", true},

		// Comparisons.
		{"%(prop:branch)s == main", true},
		{"%(prop:branch)s == dev", false},
		{"%(prop:branch)s != main", false},
		{"%(prop:branch)s != dev", true},
		{"%(prop:branch)s==main", true},
		{"main == %(prop:branch)s", true},
		{"%(prop:missing)s == ''", true},
		{`%(prop:missing)s == ""`, true},
		{"%(prop:n)s == 42", true},
		{"%(prop:yes)s == True", true},
		{"%(src::branch)s == dev", true},
		{"%(prop:branch)s%(src::branch)s == maindev", true},
		{"%(prop:skip:#?|yes|no)s == no", true},
		{"%(prop:yes:#?|yes|no)s == no", false},
		{"%(prop:missing:-a b)s == 'a b'", true},
		{"%(prop:missing:?|(a)|b)s == b", true},
		{`%(prop:quote)s == "it's"`, true},
		{`%(prop:quote)s == 'it\'s'`, true},
		{`'a\b' == "a\\b"`, true},
		{"%(prop:pct)s == 100%%", true},
		{"%(prop:branch)s == %(kw:missing:-main)s", true},

		// Regular expressions, unanchored.
		{"%(prop:branch)s =~ ^ma", true},
		{"%(prop:branch)s =~ ai", true},
		{"%(prop:branch)s =~ ^release/", false},
		{"%(prop:branch)s !~ ^release/", true},
		{"%(prop:branch)s !~ ^main$", false},
		{`%(prop:branch)s =~ "^(main|release/.*)$"`, true},
		{`%(src::repository)s =~ '\.git$'`, true},
		{"%(prop:branch)s =~ %(prop:missing:-^m)s", true},
		{"%(prop:branch)s =~ ''", true},

		// !, &&, || and parentheses.
		{"!%(prop:branch)s", false},
		{"! %(prop:empty)s", true},
		{"!!%(prop:branch)s", true},
		{"!%(prop:branch)s == main", false}, // ! negates the comparison
		{"!(%(prop:branch)s == dev)", true},
		{"%(prop:branch)s == main && %(prop:n)s == 42", true},
		{"%(prop:branch)s == main && %(prop:n)s == 41", false},
		{"%(prop:branch)s == dev || %(prop:n)s == 42", true},
		{"%(prop:branch)s == dev || %(prop:n)s == 41", false},
		{"false && false || true", true},    // && binds tighter
		{"true || false && false", true},    // && binds tighter
		{"(true || false) && false", false}, // parentheses
		{"!(true && false) && (false || true)", true},
		{"((((true))))", true},
		{"  true\t&&\n\ttrue  ", true},
		// Short-circuit: the unknown secret is never asked for.
		{"false && %(secret:nope)s", false},
		{"true || %(secret:nope)s", true},
		{"%(secret:token)s == s3cr3t", true},
	}
	c := testContext()
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			t.Parallel()
			cond, err := ParseCondition(tt.cond)
			if err != nil {
				t.Fatalf("ParseCondition(%q): %v", tt.cond, err)
			}
			if cond.String() != tt.cond {
				t.Errorf("String() = %q, want %q", cond.String(), tt.cond)
			}
			got, err := cond.Eval(c)
			if err != nil || got != tt.want {
				t.Errorf("ParseCondition(%q).Eval() = %v, %v; want %v", tt.cond, got, err, tt.want)
			}
		})
	}
}

func TestConstCondition(t *testing.T) {
	t.Parallel()
	for _, b := range []bool{true, false} {
		c := ConstCondition(b)
		got, err := c.Eval(Context{})
		if err != nil || got != b {
			t.Errorf("ConstCondition(%v).Eval() = %v, %v", b, got, err)
		}
		if want := map[bool]string{true: "true", false: "false"}[b]; c.String() != want {
			t.Errorf("ConstCondition(%v).String() = %q, want %q", b, c.String(), want)
		}
	}
}

func TestParseConditionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ cond, want string }{
		{"", "column 1: empty condition"},
		{"   ", "column 4: empty condition"},
		{"a = b", `column 3: '=' alone: want "&&", "||", "==", "!=", "=~" or "!~"`},
		{"a & b", `column 3: '&' alone: want "&&", "||", "==", "!=", "=~" or "!~"`},
		{"a | b", `column 3: '|' alone: want "&&", "||", "==", "!=", "=~" or "!~"`},
		{"a b", `column 3: unexpected operand "b"`},
		{"a == b == c", `column 8: unexpected "=="`},
		{"a ==", `column 5: expected an operand after "==", got end of condition`},
		{"== a", `column 1: expected an operand, "(" or "!", got "=="`},
		{"a &&", `column 5: expected an operand, "(" or "!", got end of condition`},
		{"&& a", `column 1: expected an operand, "(" or "!", got "&&"`},
		{"a && || b", `column 6: expected an operand, "(" or "!", got "||"`},
		{"!", `column 2: expected an operand, "(" or "!", got end of condition`},
		{"(a == b", `column 8: missing ")" to close the "(" at column 1, got end of condition`},
		{"(a b)", `column 4: missing ")" to close the "(" at column 1, got operand "b"`},
		{"a)", `column 2: unexpected ")"`},
		{"()", `column 2: expected an operand, "(" or "!", got ")"`},
		{`"abc`, `column 1: unterminated "`},
		{`a == 'abc`, `column 6: unterminated '`},
		{"a =~ (", `column 6: expected an operand after "=~", got "("`},
		{`a =~ "("`, "column 6: bad regular expression \"(\": missing closing ): `(`"},
		{`a !~ "[z-a]"`, "column 6: bad regular expression \"[z-a]\": invalid character class range: `z-a`"},
		// Template errors, at their column in the condition.
		{"%(prop:branch) == main", `column 15: missing "s" after "%(prop:branch)": got ' '`},
		{"x == %(prop:branch", `column 6: unterminated "%(": no matching ")"`},
		{"%(nope:x)s", `column 3: unknown selector "nope": want prop, src, secret, kw or worker`},
		{"a == '%(prop:)s'", `column 14: empty property name`},
		{"é == 50%", `column 8: "%" at the end: write "%%" for a literal %`},
		{"%(prop:x:?|a)s", `column 11: ":?|a" has no second '|': want :?|YES|NO`},
	}
	for _, tt := range tests {
		_, err := ParseCondition(tt.cond)
		if err == nil {
			t.Errorf("ParseCondition(%q): no error, want %q", tt.cond, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseCondition(%q):\n got %s\nwant %s", tt.cond, err, tt.want)
		}
	}
}

func TestConditionEvalErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ cond, want string }{
		{"%(secret:nope)s", `secret "nope": not found in any provider`},
		{"x == %(secret:nope)s", `secret "nope": not found in any provider`},
		{"true && %(secret:nope)s == x", `secret "nope": not found in any provider`},
		{"x =~ %(prop:missing:-[)s", "regular expression \"[\": missing closing ]: `[`"},
	}
	c := testContext()
	for _, tt := range tests {
		cond, err := ParseCondition(tt.cond)
		if err != nil {
			t.Fatalf("ParseCondition(%q): %v", tt.cond, err)
		}
		got, err := cond.Eval(c)
		if err == nil || err.Error() != tt.want || got {
			t.Errorf("ParseCondition(%q).Eval() = %v, %v; want false and error %q", tt.cond, got, err, tt.want)
		}
	}
	if _, err := must(ParseCondition("%(secret:x)s")).Eval(Context{Secret: func(string) (string, error) { return "", errBoom }}); !errors.Is(err, errBoom) {
		t.Errorf("Eval error = %v, want it to wrap %v", err, errBoom)
	}
}

var errBoom = errors.New("boom")

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
