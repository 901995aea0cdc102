package config

import (
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

func TestSourceLines(t *testing.T) {
	t.Parallel()
	src := "title = \"\"\"\n[[workers]]\nname = \"not a table\"\n\"\"\"\"\n" + // 1-4: a multi-line string holding a header
		"when = 1979-05-27 07:32:00Z # a [comment]\n" + // 5
		"[ protocols . \"grpc\" ]\r\n" + // 6, CRLF
		"port = 9989\r\n" + // 7
		"[[workers]]\n" + // 8
		"name = 'w'\n" + // 9
		"'a.b' = [\n" + // 10
		"  [1, 2], # ]\n" + // 11
		"  { x = '''\n]\n''', y.z = 2 },\n" + // 12-14
		"]\n" + // 15
		"[[builders]]\n" + // 16
		"steps = [\n" + // 17
		"  {\n    type = \"git\",\n  },\n" + // 18-20 (TOML 1.1 inline table)
		"]\n" + // 21
		"[[builders]]\n" + // 22
		"  [[builders.steps]]\n" + // 23
		"  [builders.steps.env]\n" + // 24
		"  A = \"1\"\n" // 25
	var m map[string]any
	if _, err := toml.Decode(src, &m); err != nil {
		t.Fatalf("the test's TOML is not valid: %v", err)
	}
	got := sourceLines([]byte(src))
	want := map[string]int{
		"title":                      1,
		"when":                       5,
		"protocols":                  6,
		"protocols.grpc":             6,
		"protocols.grpc.port":        7,
		"workers":                    8,
		"workers[0]":                 8,
		"workers[0].name":            9,
		`workers[0]."a.b"`:           10,
		`workers[0]."a.b"[0]`:        11,
		`workers[0]."a.b"[0][0]`:     11,
		`workers[0]."a.b"[0][1]`:     11,
		`workers[0]."a.b"[1]`:        12,
		`workers[0]."a.b"[1].x`:      12,
		`workers[0]."a.b"[1].y`:      14,
		`workers[0]."a.b"[1].y.z`:    14,
		"builders":                   16,
		"builders[0]":                16,
		"builders[0].steps":          17,
		"builders[0].steps[0]":       18,
		"builders[0].steps[0].type":  19,
		"builders[1]":                22,
		"builders[1].steps":          23,
		"builders[1].steps[0]":       23,
		"builders[1].steps[0].env":   24,
		"builders[1].steps[0].env.A": 25,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sourceLines (-want +got):\n%s", diff)
	}
}

func FuzzSourceLines(f *testing.F) {
	f.Add(Sample)
	f.Add("a = \"\"\"\nb\n")
	f.Add("[[a.b]\n[[\n'x")
	f.Add("a = [{b = [{c = '''")
	f.Fuzz(func(t *testing.T, src string) {
		sourceLines([]byte(src)) // must end and not panic
	})
}
