package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const locksBase = `
[[workers]]
name = "w1"
password = "p"

[[workers]]
name = "w2"
password = "p"
`

func TestLocks(t *testing.T) {
	t.Parallel()
	src := strings.TrimPrefix(locksBase, "\n") + `
[[locks]]
name = "db"
type = "master"

[[locks]]
name = "cpu"
type = "worker"
max_count = 2
max_count_for_worker = { w2 = 4 }

[[builders]]
name = "b"
worker_names = ["w1"]
locks = [{name = "db"}]
  [[builders.steps]]
  type = "shell"
  command = "make"
  locks = [{name = "cpu", access = "counting"}, {name = "db", access = "exclusive"}]
  [[builders.steps]]
  type = "shell"
  command = "make"
  locks = [{name = "cpu", access = "shared"}]
`
	cfg := mustParse(t, "master.toml", src)
	wantLocks := []Lock{
		{Name: "db", Type: LockMaster, MaxCount: 1, Line: lineOf(t, src, "[[locks]]", 0)},
		{Name: "cpu", Type: LockWorker, MaxCount: 2, MaxCountForWorker: map[string]int{"w2": 4}, Line: lineOf(t, src, "[[locks]]", 1)},
	}
	if diff := cmp.Diff(wantLocks, cfg.Locks); diff != "" {
		t.Errorf("locks (-want +got):\n%s", diff)
	}
	b := cfg.Builders[0]
	if diff := cmp.Diff([]LockAccess{{Name: "db", Access: AccessExclusive}}, b.Locks); diff != "" {
		t.Errorf("builder locks:\n%s", diff)
	}
	if diff := cmp.Diff([]LockAccess{{Name: "cpu", Access: AccessCounting}, {Name: "db", Access: AccessExclusive}}, b.Steps[0].Locks); diff != "" {
		t.Errorf("step locks:\n%s", diff)
	}
	if diff := cmp.Diff([]LockAccess{{Name: "cpu", Access: AccessCounting}}, b.Steps[1].Locks); diff != "" {
		t.Errorf("step locks:\n%s", diff)
	}
}

func TestLockErrors(t *testing.T) {
	t.Parallel()
	src := strings.TrimPrefix(locksBase, "\n") + `
[[locks]]
name = "db"
type = "table"
max_count = 0

[[locks]]
name = "db"
type = "master"
max_count_for_worker = { w1 = 2 }

[[locks]]
name = "cpu"
type = "worker"
max_count_for_worker = { w9 = 0 }

[[builders]]
name = "b"
worker_names = ["w1"]
locks = [{name = "nope"}, {name = "cpu", access = "sometimes"}]
  [[builders.steps]]
  type = "shell"
  command = "make"
  locks = [{name = "db"}, {name = "db"}, {access = "counting"}]
`
	_, err := Parse("master.toml", []byte(src))
	want := []string{
		`master.toml:11: locks[0].type: unknown lock type "table" (want "master", "worker")`,
		`master.toml:12: locks[0].max_count: must be at least 1`,
		`master.toml:15: locks[1].name: duplicate lock name "db" (first at line 10)`,
		`master.toml:17: locks[1].max_count_for_worker: only for a worker lock`,
		`master.toml:22: locks[2].max_count_for_worker.w9: unknown worker "w9"`,
		`master.toml:22: locks[2].max_count_for_worker.w9: must be at least 1`,
		`master.toml:27: builders[0].locks[0].name: unknown lock "nope"`,
		`master.toml:27: builders[0].locks[1].access: unknown lock access "sometimes" (want "exclusive" or "counting")`,
		`master.toml:31: builders[0].steps[0].locks: lock "db" is named twice`,
		`master.toml:31: builders[0].steps[0].locks[2].name: required`,
	}
	got := messages(t, err)
	if diff := cmp.Diff(sortedCopy(want), sortedCopy(got)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
