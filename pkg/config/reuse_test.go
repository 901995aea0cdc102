package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/masterfiles"
)

// writeTree writes files (name -> content, names relative, with "/") under
// a new directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.TrimPrefix(data, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadTree writes files and loads their master.toml; the messages of its
// errors have the directory left out.
func loadTree(t *testing.T, files map[string]string) (*Config, []string, string) {
	t.Helper()
	dir := writeTree(t, files)
	cfg, err := Load(filepath.Join(dir, "master.toml"))
	var msgs []string
	for _, m := range messages(t, err) {
		msgs = append(msgs, strings.ReplaceAll(m, dir+string(filepath.Separator), ""))
	}
	return cfg, msgs, dir
}

const reuseWorkers = `
[[workers]]
name = "w1"
password = "p"

[[workers]]
name = "fbsd1"
password = "p"

[[workers]]
name = "lin1"
password = "p"
`

func builderNames(c *Config) []string {
	var out []string
	for _, b := range c.Builders {
		out = append(out, b.Name)
	}
	return out
}

func TestInclude(t *testing.T) {
	t.Parallel()
	cfg, msgs, dir := loadTree(t, map[string]string{
		"master.toml": `
include = ["builders/*.toml", "workers.toml"]
title = "reuse"

[[builders]]
name = "first"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"

[factories.a]
  [[factories.a.steps]]
  type = "shell"
  command = "echo a"
`,
		"workers.toml": reuseWorkers,
		"builders/20-b.toml": `
[[builders]]
name = "b"
worker_names = ["w1"]
factory = "b"
`,
		"builders/10-a.toml": `
include = ["nested/c.toml"]

[[builders]]
name = "a"
worker_names = ["w1"]
factory = "a"
`,
		"nested/c.toml": `
[factories.b]
  [[factories.b.steps]]
  type = "shell"
  command = "echo b"

[[builders]]
name = "c"
worker_names = ["w1"]
factory = "b"
`,
		"builders/notes.txt": "not TOML, not matched",
	})
	if msgs != nil {
		t.Fatalf("Load: %q", msgs)
	}
	// The master's own first, then each included file in order (sorted
	// within a pattern), each followed by the files it includes.
	if diff := cmp.Diff([]string{"first", "a", "c", "b"}, builderNames(cfg)); diff != "" {
		t.Errorf("builders (-want +got):\n%s", diff)
	}
	want := []string{"builders/10-a.toml", "nested/c.toml", "builders/20-b.toml", "workers.toml"}
	for i := range want {
		want[i] = filepath.Join(dir, filepath.FromSlash(want[i]))
	}
	if diff := cmp.Diff(want, cfg.Included); diff != "" {
		t.Errorf("Included (-want +got):\n%s", diff)
	}
	if got := cfg.Builders[2].Steps[0].Command.Script; got != "echo b" {
		t.Errorf("builder c's step from factory b of an included file: %q", got)
	}
	// Included files are the master's own: transfers may not touch them.
	files := cfg.MasterFiles(dir)
	for _, f := range want {
		if !slices.ContainsFunc(files, func(m masterfiles.File) bool { return m.Path == f }) {
			t.Errorf("MasterFiles has no %s", f)
		}
	}
	if len(cfg.Workers) != 3 || cfg.Title != "reuse" {
		t.Errorf("workers %d, title %q", len(cfg.Workers), cfg.Title)
	}
	// Warnings name the included file a worker is in.
	ws := strings.Join(cfg.Warnings(), "\n")
	if w := filepath.Join(dir, "workers.toml") + ":1: workers: worker \"w1\": its password is shorter"; !strings.Contains(ws, w) {
		t.Errorf("warnings\n%s\nwant one starting %q", ws, w)
	}
}

// TestIncludeTransferRefused: a transfer step may not write an included
// file, as it may not write master.toml.
func TestIncludeTransferRefused(t *testing.T) {
	t.Parallel()
	_, msgs, _ := loadTree(t, map[string]string{
		"master.toml": `
include = ["more.toml"]
` + reuseWorkers + `
[[builders]]
name = "up"
worker_names = ["w1"]
  [[builders.steps]]
  type = "file_upload"
  workersrc = "x"
  masterdest = "more.toml"
`,
		"more.toml": `title = "more"`,
	})
	if len(msgs) != 1 || !strings.Contains(msgs[0], "an included config file") {
		t.Errorf("errors %q, want one refusing to write more.toml", msgs)
	}
}

func TestIncludeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{{
		name:  "missing file",
		files: map[string]string{"master.toml": "include = [\"builder.toml\"]\n" + reuseWorkers},
		want:  []string{`master.toml:1: include[0]: "builder.toml": no such file (every include must name at least one file, so that a typo cannot drop builders)`},
	}, {
		name:  "pattern matching nothing",
		files: map[string]string{"master.toml": "include = [\n  \"a.toml\",\n  \"builder/*.toml\",\n]\n", "a.toml": reuseWorkers},
		want:  []string{`master.toml:3: include[1]: "builder/*.toml": the pattern matches no file (every include must name at least one file, so that a typo cannot drop builders)`},
	}, {
		name:  "not an array",
		files: map[string]string{"master.toml": "include = 3\n"},
		want:  []string{`master.toml:1: include: expected an array of file names or patterns, got integer`},
	}, {
		name:  "a directory",
		files: map[string]string{"master.toml": "include = [\"d\"]\n", "d/x.toml": ""},
		want:  []string{`master.toml:1: include[0]: "` + "DIR" + `d" is a directory (include its files: "d/*.toml")`},
	}, {
		name: "key set twice across files",
		files: map[string]string{
			"master.toml": "include = [\"a.toml\"]\ntitle = \"one\"\n[www]\nport = 1\n",
			"a.toml":      "# a\n[www]\ninterface = \"127.0.0.1\"\nport = 2\n",
		},
		want: []string{`a.toml:4: www.port: set twice: first at DIRmaster.toml:4, again here (only arrays of tables such as [[builders]] add up across included files)`},
	}, {
		name: "syntax error in an included file",
		files: map[string]string{
			"master.toml": "include = [\"a.toml\"]\n",
			"a.toml":      "title = \"x\"\n\ntitle_url =\n",
		},
		want: []string{`a.toml:3: title_url: expected value but found '\n' instead`},
	}, {
		name: "errors in an included file name it, its line and key",
		files: map[string]string{
			"master.toml": "include = [\"b.toml\"]\n" + reuseWorkers + "\n[[builders]]\nname = \"m\"\nworker_names = [\"w1\"]\n  [[builders.steps]]\n  type = \"shell\"\n  command = \"true\"\n",
			"b.toml":      "# builders\n\n[[builders]]\nname = \"x\"\nworker_names = [\"w1\", \"nobody\"]\n  [[builders.steps]]\n  type = \"shell\"\n  comand = \"true\"\n",
		},
		want: []string{
			`b.toml:5: builders[0].worker_names: unknown worker "nobody"`,
			`b.toml:6: builders[0].steps[0].command: required for a shell step`,
			`b.toml:8: builders[0].steps[0].comand: unknown key`,
		},
	}, {
		// probe-cfg1 #2: with no builders in master.toml, the first file
		// holding some was blamed for nothing: master.toml took the errors
		// of its builder-level keys, with no line.
		name: "builders only in included files",
		files: map[string]string{
			"master.toml":        "include = [\"builders/*.toml\"]\n" + reuseWorkers,
			"builders/10.toml":   "[[builders]]\nname = \"a\"\nworker_names = [\"w9\"]\ndescripton = \"typo\"\n  [[builders.steps]]\n  type = \"shell\"\n  command = \"true\"\n",
			"builders/20.toml":   "[[builders]]\nname = \"b\"\nworker_names = [\"w9\"]\ndescripton = \"typo\"\n  [[builders.steps]]\n  type = \"shell\"\n  command = \"true\"\n",
			"builders/30-m.toml": "# matrix\n[[builders]]\nname = \"t-%(kw:os)s\"\nworker_names = [\"w1\"]\ncolour = 1\n  [builders.matrix]\n  os = [\"a\", \"b\"]\n  [[builders.steps]]\n  type = \"shell\"\n  command = \"true\"\n\n[[builders]]\nname = \"a\"\nworker_names = [\"w1\"]\n  [[builders.steps]]\n  type = \"shell\"\n  command = \"true\"\n",
		},
		want: []string{
			`builders/10.toml:3: builders[0].worker_names: unknown worker "w9"`,
			`builders/10.toml:4: builders[0].descripton: unknown key`,
			`builders/20.toml:3: builders[0].worker_names: unknown worker "w9"`,
			`builders/20.toml:4: builders[0].descripton: unknown key`,
			`builders/30-m.toml:5: builders[0].colour: unknown key`,
			`builders/30-m.toml:13: builders[1].name: duplicate builder name "a" (first at DIRbuilders/10.toml:2)`,
		},
	}, {
		name: "a name taken in another file",
		files: map[string]string{
			"master.toml": "include = [\"a.toml\"]\n" + reuseWorkers,
			"a.toml":      "# a\n[[workers]]\nname = \"w1\"\npassword = \"p\"\n",
		},
		want: []string{`a.toml:3: workers[0].name: duplicate worker name "w1" (first at DIRmaster.toml:4)`},
	}, {
		name:  "a device",
		files: map[string]string{"master.toml": "include = [\"/dev/zero\"]\n"},
		want:  []string{`master.toml:1: include[0]: "/dev/zero": not a regular file`},
	}, {
		name: "include cycle",
		files: map[string]string{
			"master.toml": "include = [\"a.toml\"]\n",
			"a.toml":      "include = [\"b.toml\"]\n",
			"b.toml":      "# b\ninclude = [\"a.toml\", \"master.toml\"]\n",
		},
		want: []string{
			`b.toml:2: include[0]: "DIRa.toml" is read twice (it is DIRa.toml, already read): an include cycle, or two patterns naming one file`,
			`b.toml:2: include[1]: "DIRmaster.toml" is read twice (it is DIRmaster.toml, already read): an include cycle, or two patterns naming one file`,
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, msgs, _ := loadTree(t, tc.files)
			// The directory is left out of messages; inside them too.
			for i, w := range tc.want {
				tc.want[i] = strings.ReplaceAll(w, "DIR", "")
			}
			if diff := cmp.Diff(tc.want, msgs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFactories(t *testing.T) {
	t.Parallel()
	cfg, msgs, _ := loadTree(t, map[string]string{"master.toml": reuseWorkers + `
[factories.unit]
  [[factories.unit.steps]]
  type = "git"
  repourl = "https://example.invalid/r.git"

  [[factories.unit.steps]]
  type = "shell"
  name = "test"
  command = ["make", "test"]

[[builders]]
name = "one"
worker_names = ["w1"]
factory = "unit"

[[builders]]
name = "two"
worker_names = ["w1"]
factory = "unit"
workdir = "src"
  [[builders.steps]]
  type = "shell"
  name = "extra"
  command = "make bench"
`})
	if msgs != nil {
		t.Fatal(msgs)
	}
	var got [][]string
	for _, b := range cfg.Builders {
		var names []string
		for _, s := range b.Steps {
			names = append(names, s.Name+"@"+s.Workdir)
		}
		got = append(got, names)
	}
	want := [][]string{{"git@build", "test@build"}, {"git@src", "test@src", "extra@src"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}

func TestFactoryErrors(t *testing.T) {
	t.Parallel()
	_, msgs, _ := loadTree(t, map[string]string{"master.toml": reuseWorkers + `
[factories.unit]
  [[factories.unit.steps]]
  type = "shel"
  command = "x"

[factories.empty]
description = "x"

[[builders]]
name = "one"
worker_names = ["w1"]
factory = "unit"

[[builders]]
name = "two"
worker_names = ["w1"]
factory = "unit"

[[builders]]
name = "three"
worker_names = ["w1"]
factory = "unti"
`})
	want := []string{
		`master.toml:15: factories.unit.steps[0].type: unknown step type "shel" (want "shell", "git", "trigger", "directory_upload", "file_download", "file_upload", "json_properties_download", "json_string_download", "mkdir", "multiple_file_upload", "remove_file", "rmdir", "shell_sequence", "string_download", "log_message", "master_shell_command", "set_property", "set_property_from_command")`,
		`master.toml:18: factories.empty: a factory needs at least one step ([[factories.empty.steps]])`,
		`master.toml:19: factories.empty.description: unknown key (a factory has only steps)`,
		`master.toml:34: builders[2].factory: unknown factory "unti" (known: "empty", "unit")`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestMatrix(t *testing.T) {
	t.Parallel()
	cfg, msgs, _ := loadTree(t, map[string]string{"master.toml": reuseWorkers + `
[factories.gotest]
  [[factories.gotest.steps]]
  type = "shell"
  name = "test %(kw:os)s"
  command = ["go%(kw:go)s", "test", "%(prop:extra:-./...)s"]
  hide_step_if = "%(kw:results)s == 'success'"

[[builders]]
name = "test-%(kw:os)s-%(kw:go)s"
description = "Go %(kw:go)s on %(kw:os)s, 100%% tested"
tags = ["%(kw:os)s", "go"]
factory = "gotest"
env = { GOOS = "%(kw:os)s" }
  [builders.properties]
  label = "%(kw:os)s/%(kw:go)s"
  [builders.matrix]
  os = ["freebsd", "linux"]
  go = ["1.25", "1.26"]
  [builders.matrix.workers]
  os.freebsd = ["fbsd1"]
  os.linux = ["lin1", "w1"]

[[builders]]
name = "vet-%(kw:go)s-%(kw:arch)s"
worker_names = ["w1"]
matrix = { go = ["1.26"], arch = ["amd64", "arm64"] }
  [[builders.steps]]
  type = "shell"
  command = "GOARCH=%(kw:arch)s go vet"
`})
	if msgs != nil {
		t.Fatal(msgs)
	}
	type got struct {
		Name, Description string
		Tags, Workers     []string
		Props             map[string]any
		Command           []string
		StepName          string
		Env               map[string]string
	}
	var all []got
	for _, b := range cfg.Builders {
		s := b.Steps[0]
		all = append(all, got{b.Name, b.Description, b.Tags, b.WorkerNames, b.Properties, s.Command.Argv, s.Name, s.Env})
	}
	mk := func(os, goV string, workers ...string) got {
		return got{
			Name: "test-" + os + "-" + goV, Description: "Go " + goV + " on " + os + ", 100%% tested",
			Tags: []string{os, "go"}, Workers: workers,
			Props:    map[string]any{"label": os + "/" + goV, "os": os, "go": goV},
			Command:  []string{"go" + goV, "test", "%(prop:extra:-./...)s"},
			StepName: "test " + os, Env: map[string]string{"GOOS": os},
		}
	}
	vet := func(arch string) got {
		return got{Name: "vet-1.26-" + arch, Workers: []string{"w1"},
			Props: map[string]any{"go": "1.26", "arch": arch}, StepName: "shell"}
	}
	want := []got{
		mk("freebsd", "1.25", "fbsd1"), mk("freebsd", "1.26", "fbsd1"),
		mk("linux", "1.25", "lin1", "w1"), mk("linux", "1.26", "lin1", "w1"),
		// In an inline table too, the order written: go, then arch.
		vet("amd64"), vet("arm64"),
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("builders (-want +got):\n%s", diff)
	}
	if got := cfg.Builders[5].Steps[0].Command.Script; got != "GOARCH=arm64 go vet" {
		t.Errorf("vet's command: %q", got)
	}
	if got := cfg.Builders[0].Steps[0].HideStepIf.String(); got != "%(kw:results)s == 'success'" {
		t.Errorf("hide_step_if keeps the build's kw: %q", got)
	}
}

func TestMatrixErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, toml string
		want       []string
	}{{
		name: "empty key",
		toml: `
[[builders]]
name = "t-%(kw:os)s"
worker_names = ["w1"]
matrix = { os = [] }
`,
		want: []string{`master.toml:16: builders[0].matrix.os: must not be empty: an empty matrix key makes no builder`},
	}, {
		name: "no key",
		toml: `
[[builders]]
name = "t"
worker_names = ["w1"]
  [builders.matrix]
`,
		want: []string{`master.toml:16: builders[0].matrix: a matrix needs at least one key with values, such as os = ["freebsd", "linux"]`},
	}, {
		name: "name without every key",
		toml: `
[[builders]]
name = "t-%(kw:os)s"
worker_names = ["w1"]
  [builders.matrix]
  os = ["a", "b"]
  go = ["1"]
`,
		want: []string{`master.toml:14: builders[0].name: "t-%(kw:os)s" does not use %(kw:go)s: the builders of the matrix would share a name`},
	}, {
		name: "unknown kw, kw with a default",
		toml: `
[[builders]]
name = "t-%(kw:os)s"
worker_names = ["w1"]
matrix = { os = ["a"] }
  [[builders.steps]]
  type = "shell"
  command = ["echo", "%(kw:arch)s", "%(kw:os:-x)s"]
`,
		want: []string{
			`master.toml:19: builders[0].steps[0].command[1]: %(kw:arch)s: not a key of the builder's matrix (os)`,
			`master.toml:19: builders[0].steps[0].command[2]: %(kw:os...: a matrix key is written %(kw:os)s, without default or condition`,
		},
	}, {
		name: "bad values",
		toml: `
[[builders]]
name = "t-%(kw:os)s"
worker_names = ["w1"]
matrix = { os = ["a", "a", "", 3] }
`,
		want: []string{
			`master.toml:16: builders[0].matrix.os: "a" is given twice`,
			`master.toml:16: builders[0].matrix.os: "": a matrix value must be non-empty and without %`,
			`master.toml:16: builders[0].matrix.os: expected a string, got integer`,
		},
	}, {
		name: "workers: unknown key, unknown value, unknown worker",
		toml: `
[[builders]]
name = "t-%(kw:os)s"
  [builders.matrix]
  os = ["a", "b"]
  [builders.matrix.workers]
  arch.x = ["w1"]
  os.c = ["w1"]
  os.a = ["nobody"]
  os.b = "w1"
`,
		want: []string{
			// b's builder has no worker_names at all.
			`master.toml:13: builders[0].worker_names: required`,
			`master.toml:18: builders[0].matrix.workers.arch: "arch" is not a key of the matrix`,
			`master.toml:19: builders[0].matrix.workers.os.c: "c" is not a value of the matrix key os`,
			`master.toml:20: builders[0].matrix.workers.os.a: unknown worker "nobody"`,
			`master.toml:21: builders[0].matrix.workers.os.b: expected a non-empty array of worker names, got string`,
		},
	}, {
		// probe-cfg1: go.1.25 is TOML for go → 1 → 25; say to quote it.
		name: "workers: a dotted value unquoted",
		toml: `
[[builders]]
name = "t-%(kw:go)s"
  [builders.matrix]
  go = ["1.25", "1.26"]
  [builders.matrix.workers]
  go.1.25 = ["w1"]
  go."1.26" = ["w1"]
`,
		want: []string{
			`master.toml:13: builders[0].worker_names: required`,
			`master.toml:18: builders[0].matrix.workers.go.1: "1" is not a value of the matrix key go (TOML reads a dotted key as nested tables: quote the value, "1.25" = [...])`,
		},
	}, {
		name: "too many builders",
		toml: `
[[builders]]
name = "t-%(kw:a)s-%(kw:b)s-%(kw:c)s-%(kw:d)s"
worker_names = ["w1"]
matrix = { a = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], b = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], c = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], d = ["0", "1"] }
`,
		want: []string{`master.toml:16: builders[0].matrix: makes more than 1000 builders: split it`},
	}, {
		name: "a matrix key as a property",
		toml: `
[[builders]]
name = "t-%(kw:os)s"
worker_names = ["w1"]
properties = { os = "x" }
matrix = { os = ["a"] }
`,
		want: []string{`master.toml:16: builders[0].properties.os: is a matrix key too: the matrix sets it to each builder's value`},
	}, {
		name: "expanded name taken",
		toml: `
[[builders]]
name = "t-a"
worker_names = ["w1"]

[[builders]]
name = "t-%(kw:os)s"
worker_names = ["w1"]
matrix = { os = ["a"] }
`,
		want: []string{`master.toml:18: builders[1].name: duplicate builder name "t-a" (first at line 14)`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, msgs, _ := loadTree(t, map[string]string{"master.toml": reuseWorkers + tc.toml})
			if diff := cmp.Diff(tc.want, msgs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuilderEnvDirDefaults(t *testing.T) {
	t.Parallel()
	cfg, msgs, _ := loadTree(t, map[string]string{"master.toml": reuseWorkers + `
[[builders]]
name = "b"
worker_names = ["w1"]
workerbuilddir = "shared-dir"
env = { CC = "clang", PATH = "/opt/bin:/usr/bin" }
default_properties = { level = 3 }
  [[builders.steps]]
  type = "shell"
  command = "true"
  env = { CC = "gcc" }

  [[builders.steps]]
  type = "git"
  repourl = "https://example.invalid/r.git"

  [[builders.steps]]
  type = "set_property_from_command"
  property = "cc"
  command = "echo $CC"
`})
	if msgs != nil {
		t.Fatal(msgs)
	}
	b := cfg.Builders[0]
	if b.WorkerDir() != "shared-dir" {
		t.Errorf("WorkerDir %q", b.WorkerDir())
	}
	if diff := cmp.Diff(map[string]any{"level": int64(3)}, b.DefaultProperties); diff != "" {
		t.Errorf("DefaultProperties (-want +got):\n%s", diff)
	}
	want := []map[string]string{
		{"CC": "gcc", "PATH": "/opt/bin:/usr/bin"}, // the step's own wins
		nil, // buildbot's source steps take no builder env
		{"CC": "clang", "PATH": "/opt/bin:/usr/bin"},
	}
	var got []map[string]string
	for _, s := range b.Steps {
		got = append(got, s.Env)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps' env (-want +got):\n%s", diff)
	}

	_, msgs, _ = loadTree(t, map[string]string{"master.toml": reuseWorkers + `
[[builders]]
name = "x1"
worker_names = ["w1"]
workerbuilddir = "../up"
env = { X = 1, Y = "%(prop:" }

[[builders]]
name = "x2"
worker_names = ["w1"]
workerbuilddir = "/abs"

[[builders]]
name = "c"
worker_names = ["w1"]
workerbuilddir = "a"

[[builders]]
name = "d"
worker_names = ["w1"]
workerbuilddir = "a"
default_properties = 3
`})
	wantErrs := []string{
		`master.toml:16: builders[0].workerbuilddir: "../up": must be one directory name in the worker's base directory, without / (gbb's worker keeps each builder in one directory there)`,
		`master.toml:17: builders[0].env.X: expected a string or an array of strings (joined with ":"), got integer`,
		`master.toml:17: builders[0].env.Y: bad interpolation: column 1: unterminated "%(": no matching ")"`,
		`master.toml:22: builders[1].workerbuilddir: "/abs": must be one directory name in the worker's base directory, without / (gbb's worker keeps each builder in one directory there)`,
		`master.toml:32: builders[3].workerbuilddir: builders "c" and "d" would share the directory "a" on their workers (this workerbuilddir): give each its own directory`,
		`master.toml:33: builders[3].default_properties: expected a table, got integer`,
	}
	if diff := cmp.Diff(wantErrs, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// TestWorkerBuildDirOwnNames: probe-cfg1. A workerbuilddir naming one of
// the worker's own files or state directories (.gbb-running, info,
// worker.log...), or starting with "." or "-", is refused; a builder
// sharing a directory because of another's workerbuilddir is told so.
func TestWorkerBuildDirOwnNames(t *testing.T) {
	t.Parallel()
	builder := func(name, dir string) string {
		s := "\n[[builders]]\nname = \"" + name + "\"\nworker_names = [\"w1\"]\n"
		if dir != "" {
			s += "workerbuilddir = \"" + dir + "\"\n"
		}
		return s + "  [[builders.steps]]\n  type = \"shell\"\n  command = \"true\"\n"
	}
	cfg := reuseWorkers
	for i, dir := range []string{".gbb-running", ".hidden", "-rf", "info", "worker.log", "worker.log.3", "worker.toml", "twistd.pid", "buildbot.tac", "worker.pid"} {
		cfg += builder(fmt.Sprint("b", i), dir)
	}
	cfg += builder("x", "shared") + builder("shared", "") + builder("ok", "info-dir") + builder("ok2", "worker.logs")
	_, msgs, _ := loadTree(t, map[string]string{"master.toml": cfg})
	var got []string
	for _, m := range msgs {
		_, after, _ := strings.Cut(m, ".workerbuilddir: ")
		if after == "" {
			after = m
		}
		got = append(got, after)
	}
	own := `is a file of the worker's own in its base directory (info, worker.toml, worker.log, worker.pid, buildbot.tac, twistd.log, twistd.pid): choose another name`
	want := []string{
		`".gbb-running": must not start with "." (the worker keeps its own state in hidden directories such as .gbb-running, and a leading "-" reads as an option)`,
		`".hidden": must not start with "." (the worker keeps its own state in hidden directories such as .gbb-running, and a leading "-" reads as an option)`,
		`"-rf": must not start with "-" (the worker keeps its own state in hidden directories such as .gbb-running, and a leading "-" reads as an option)`,
		`"info": ` + own, `"worker.log": ` + own, `"worker.log.3": ` + own, `"worker.toml": ` + own,
		`"twistd.pid": ` + own, `"buildbot.tac": ` + own, `"worker.pid": ` + own,
		`master.toml:102: builders[11].name: builders "x" and "shared" would share the directory "shared" on their workers (builder "x"'s workerbuilddir): give each its own directory`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// TestDumpRoundTrip: Dump's output loads to the same Config as the
// config it expands, includes, factories and matrices and all.
func TestDumpRoundTrip(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{
		"master.toml": `
include = ["builders/*.toml"]
title = "dump"
` + reuseWorkers + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["test-freebsd", "test-linux", "lint"]

[factories.unit]
  [[factories.unit.steps]]
  type = "shell"
  command = ["make", "OS=%(kw:os)s"]
  timeout = "5m"
  do_step_if = "%(prop:run:-yes)s == 'yes'"
`,
		"builders/a.toml": `
[[builders]]
name = "test-%(kw:os)s"
factory = "unit"
env = { OS = "%(kw:os)s" }
default_properties = { when = 2026-01-02T03:04:05Z, n = 1.5 }
  [builders.matrix]
  os = ["freebsd", "linux"]
  [builders.matrix.workers]
  os.freebsd = ["fbsd1"]
  os.linux = ["lin1"]

[[builders]]
name = "lint"
worker_names = ["w1"]
workerbuilddir = "lintdir"
  [[builders.steps]]
  type = "shell"
  command = "make lint"
  decode_rc = { 0 = "success", 1 = "warnings" }
`,
	})
	path := filepath.Join(dir, "master.toml")
	want, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Dump(path)
	if err != nil {
		t.Fatal(err)
	}
	if abs, _ := filepath.Abs(dir); !strings.Contains(string(out), "\n# relative paths in it are relative to "+abs+": load it from that directory\n") {
		t.Errorf("the dump's header does not say its relative paths are relative to %s:\n%.500s", abs, out)
	}
	for _, gone := range []string{"\ninclude", "[factories", "factory =", "matrix", "%(kw:os)s"} {
		if strings.Contains(string(out), gone) {
			t.Errorf("the dump is not expanded: it has %q:\n%s", gone, out)
		}
	}
	dumped := filepath.Join(dir, "dumped.toml")
	if err := os.WriteFile(dumped, out, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dumped)
	if err != nil {
		t.Fatalf("the dump does not load: %v\n%s", err, out)
	}
	if len(got.Builders) != 3 {
		t.Fatalf("dump has %d builders", len(got.Builders))
	}
	ignore := cmp.FilterPath(func(p cmp.Path) bool {
		sf, ok := p.Last().(cmp.StructField)
		return ok && (sf.Name() == "Line" || sf.Name() == "File" || sf.Name() == "Included" || sf.Name() == "IncludePatterns" || sf.Name() == "Origins")
	}, cmp.Ignore())
	if diff := cmp.Diff(want, got, ignore, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
		t.Errorf("the dump loads to another Config (-master.toml +dump):\n%s\n%s", diff, out)
	}
}

// TestDumpRefusesBadConfig: Dump reports a config's errors as Load does.
func TestDumpRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"master.toml": "include = [\"x.toml\"]\n"})
	_, err := Dump(filepath.Join(dir, "master.toml"))
	if len(Errors(err)) != 1 || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Dump: %v", err)
	}
}

// TestIncludePatternTransferRefused: probe-cfg1 #3. A transfer may not
// write where an include pattern would read a file at the next reconfig
// (builders/99-evil.toml), existing or not, nor a directory that could
// hold one; MasterFiles lists the pattern for the running steps.
func TestIncludePatternTransferRefused(t *testing.T) {
	t.Parallel()
	step := func(name, typ, src, dest string) string {
		return "\n[[builders]]\nname = \"" + name + "\"\nworker_names = [\"w1\"]\n  [[builders.steps]]\n  type = \"" + typ + "\"\n  workersrc = \"" + src + "\"\n  masterdest = \"" + dest + "\"\n"
	}
	cfg, msgs, _ := loadTree(t, map[string]string{
		"master.toml": "include = [\"builders/*.toml\"]\n" + reuseWorkers +
			step("plant", "file_upload", "x", "builders/99-evil.toml") +
			step("replace", "directory_upload", "d", "builders") +
			step("fine", "file_upload", "x", "artifacts/99.toml"),
		"builders/10.toml": "# none yet\n",
	})
	if len(msgs) != 2 || !strings.Contains(msgs[0], `"builders/99-evil.toml" is a file an include pattern reads`) ||
		!strings.Contains(msgs[1], `step "directory_upload": "builders" `) {
		t.Errorf("errors %q, want the plant and replace steps refused", msgs)
	}
	if cfg != nil {
		t.Fatalf("config loaded despite the errors")
	}
	cfg, msgs, _ = loadTree(t, map[string]string{
		"master.toml":      "include = [\"builders/*.toml\"]\n" + reuseWorkers + step("fine", "file_upload", "x", "artifacts/99.toml"),
		"builders/10.toml": "# none yet\n",
	})
	if len(msgs) != 0 {
		t.Fatalf("errors %q", msgs)
	}
	found := false
	for _, f := range cfg.MasterFiles(filepath.Dir(cfg.File)) {
		found = found || f.Pattern && f.Path == filepath.Join(filepath.Dir(cfg.File), "builders", "*.toml")
	}
	if !found {
		t.Errorf("MasterFiles has no pattern for builders/*.toml: %+v", cfg.MasterFiles(filepath.Dir(cfg.File)))
	}
}
