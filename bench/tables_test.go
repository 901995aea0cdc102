package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// The README's and BENCHMARKS.md's result tables are not typed: they are
// made from bench/results.json by
//
//	go test ./bench/ -run TestTables -update-tables
//
// which rewrites what lies between the markers below. TestTables fails
// while a committed table differs from what results.json makes.
var updateTables = flag.Bool("update-tables", false, "rewrite the tables of README.md and BENCHMARKS.md from results.json")

const (
	tableBegin = "<!-- bench table: made from bench/results.json by `go test ./bench/ -run TestTables -update-tables`; do not edit -->\n"
	tableEnd   = "<!-- end of bench table -->\n"
)

// tableFiles are the files that keep the table, from bench/.
var tableFiles = []string{"../README.md", "../BENCHMARKS.md"}

func readRun(path string) (*runInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r runInfo
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(r.Results) == 0 {
		return nil, fmt.Errorf("%s: no results", path)
	}
	return &r, nil
}

// replaceTable puts table between doc's markers; it fails when doc has not
// exactly one pair of them.
func replaceTable(doc, table string) (string, error) {
	if strings.Count(doc, tableBegin) != 1 || strings.Count(doc, tableEnd) != 1 {
		return "", fmt.Errorf("want one %q and one %q", strings.TrimSpace(tableBegin), strings.TrimSpace(tableEnd))
	}
	i := strings.Index(doc, tableBegin) + len(tableBegin)
	j := strings.Index(doc, tableEnd)
	if j < i {
		return "", fmt.Errorf("%q comes before %q", strings.TrimSpace(tableEnd), strings.TrimSpace(tableBegin))
	}
	return doc[:i] + table + doc[j:], nil
}

func TestTables(t *testing.T) {
	run, err := readRun("results.json")
	if err != nil {
		t.Fatal(err)
	}
	table := run.table()
	for _, f := range tableFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := replaceTable(string(data), table)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if want == string(data) {
			continue
		}
		if *updateTables {
			if err := os.WriteFile(f, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: table rewritten from results.json", f)
			continue
		}
		t.Errorf("%s: its bench table is not what bench/results.json makes; run `go test ./bench/ -run TestTables -update-tables`", f)
	}
}

// TestTableMarkers checks replaceTable on its own, so that TestTables
// cannot pass by replacing nothing.
func TestTableMarkers(t *testing.T) {
	doc := "intro\n" + tableBegin + "old\n" + tableEnd + "outro\n"
	got, err := replaceTable(doc, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "intro\n" + tableBegin + "new\n" + tableEnd + "outro\n"; got != want {
		t.Errorf("replaceTable = %q, want %q", got, want)
	}
	for _, bad := range []string{"no markers\n", tableBegin + tableBegin + tableEnd, tableEnd + tableBegin} {
		if _, err := replaceTable(bad, "x\n"); err == nil {
			t.Errorf("replaceTable(%q) accepted it", bad)
		}
	}
}

// TestScenarioOrder: rows are ordered by their scenario's number, so the
// PostgreSQL rows (10, 11) come after 9, not between 1 and 2.
func TestScenarioOrder(t *testing.T) {
	got := []string{"11 two masters", "2 idle memory", "10 postgres", "1 start-up", "9 metrics cost", "2 a"}
	slices.SortStableFunc(got, compareScenarios)
	want := []string{"1 start-up", "2 a", "2 idle memory", "9 metrics cost", "10 postgres", "11 two masters"}
	if !slices.Equal(got, want) {
		t.Errorf("ordered %q, want %q", got, want)
	}
}
