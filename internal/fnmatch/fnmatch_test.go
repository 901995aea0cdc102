package fnmatch

import (
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type matchCase struct {
	pattern, name string
	want          bool // unused by comparePython, which asks python3
}

// cases are patterns and names whose matches Python's fnmatch decides;
// the want column is what python3 3.11 answered, and the test asks
// python3 again.
var cases = []matchCase{
	{"restricted*", "restricted/x", true},
	{"*", "restricted/x", true},
	{"*", "", true},
	{"?", "/", true},
	{"a?c", "a/c", true},
	{"*/x", "a/b/x", true},
	{"restricted*", "Restricted-x", false},
	{"r*d", "r/e/d", true},
	{"[ab]*", "b/c", true},
	{"[!ab]*", "b/c", false},
	{"[!ab]*", "c/b", true},
	{"[a-c]x", "bx", true},
	{"[a-c]x", "dx", false},
	{"[z-a]x", "zx", false},
	{"[z-a]x", "ax", false},
	{"[!z-a]x", "qx", true},
	{"[z-a-c]", "-", true},
	{"[z-a-c]", "c", true},
	{"[z-a-c]", "b", false},
	{"[]]", "]", true},
	{"[!]]", "]", false},
	{"[!]]", "a", true},
	{"[a-]", "-", true},
	{"[-a]", "-", true},
	{"[a-c-e]", "-", true},
	{"[a-c-e]", "d", false},
	{"[a-c-e]", "e", true},
	{"[", "[", true},
	{"[a", "[a", true},
	{"a[", "a[", true},
	{"[!", "[!", true},
	{`\*`, `\x`, true},
	{`\*`, `*`, false},
	{`[\]`, `\`, true},
	{"[&&]", "&", true},
	{"[^a]", "^", true},
	{"[^a]", "b", false},
	{"a.b", "axb", false},
	{"a+b", "a+b", true},
	{"(x)", "(x)", true},
	{"**", "a/b", true},
	{"a*b*c", "a/b/c", true},
	{"a*b*c", "a/c/b", false},
	{"?", "é", true},
	{"[é]", "é", true},
	{"*", "line\nbreak", true},
	{"[!a]", "\n", true},
	{"b[0-9][0-9]", "b42", true},
	{"b[0-9][0-9]", "b4x", false},
}

func TestMatchAsPython(t *testing.T) {
	t.Parallel()
	for _, c := range cases {
		if got := Match(c.pattern, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v (regexp %s)", c.pattern, c.name, got, c.want, translate(c.pattern))
		}
	}
	comparePython(t, cases)
}

// TestRandomAsPython compares random patterns of fnmatch's special
// characters with python3's answers.
func TestRandomAsPython(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab-z!^]/[*?\\"
	word := func(n int) string {
		var b strings.Builder
		for range rng.IntN(n) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	var cs []matchCase
	for range 3000 {
		cs = append(cs, matchCase{pattern: word(9), name: word(5)})
	}
	comparePython(t, cs)
}

// comparePython checks Match against python3's fnmatch.fnmatchcase on cs.
func comparePython(t *testing.T, cs []matchCase) {
	t.Helper()
	type pair struct{ Pattern, Name string }
	var in []pair
	for _, c := range cs {
		in = append(in, pair{c.pattern, c.name})
	}
	data, _ := json.Marshal(in)
	cmd := exec.Command("python3", "-c", `
import fnmatch, json, sys
print(json.dumps([fnmatch.fnmatchcase(p["Name"], p["Pattern"]) for p in json.load(sys.stdin)]))`)
	cmd.Stdin = strings.NewReader(string(data))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v (python3 is part of the machine's base system)", err)
	}
	var py []bool
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatalf("python3's answer %q: %v", out, err)
	}
	var got []bool
	for _, c := range cs {
		got = append(got, Match(c.pattern, c.name))
	}
	want := py
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Match differs from python3's fnmatch (-python +gbb):\n%s", diff)
		for i, c := range cs {
			if want[i] != got[i] {
				t.Errorf("  fnmatchcase(%q, %q) = %v in python3", c.name, c.pattern, want[i])
			}
		}
	}
}
