package gbb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBoundaries keeps the import graph as DESIGN.md and STYLE.md draw it.
func TestBoundaries(t *testing.T) {
	t.Parallel()
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/gbb-ci/gbb/"
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		// The worker is dumb: no store, no web, no build logic.
		{mod + "cmd/worker", []string{"go.etcd.io/bbolt", "github.com/go-chi/chi", "github.com/gorilla/websocket", mod + "pkg/store", mod + "web", mod + "pkg/build", mod + "pkg/scheduler", mod + "pkg/config"}},
		// The protocol does not know the store.
		{mod + "pkg/protocol", []string{mod + "pkg/store", "go.etcd.io/bbolt"}},
		// One-way: nothing below web imports it.
		{mod + "pkg/build", []string{mod + "web", mod + "pkg/master"}},
		{mod + "pkg/scheduler", []string{mod + "web", mod + "pkg/master", mod + "pkg/build"}},
		{mod + "pkg/config", []string{mod + "pkg/store", "go.etcd.io/bbolt"}},
		// The change hooks make Changes; the server only mounts them
		// (issue 15).
		{mod + "pkg/changesource/hooks", []string{mod + "web"}},
		// web/auth returns decisions; the callers render them.
		{mod + "web/auth", []string{mod + "web/api", mod + "web/ui", mod + "web/live", "github.com/go-chi/chi", "html/template"}},
		// web/api renders no page.
		{mod + "web/api", []string{mod + "web/ui", mod + "web/live"}},
		// web/ui reads through web/api's read model; it knows no stream.
		{mod + "web/ui", []string{mod + "web/live"}},
		// web/live streams events; the server gives it their encoding.
		{mod + "web/live", []string{mod + "web/api", mod + "web/ui", "html/template"}},
		// The worker's git step runs the git binary, as buildbot's Git
		// step does: go-git (with its ssh, openpgp and circl) would be 3-4
		// MB of its idle RSS. The master's poller uses go-git, so that the
		// master needs no git (issue 17). Test helpers stay in tests.
		// PB is a wire protocol: it knows bbworker.Conn, not what the
		// master does with it (issue 20).
		{mod + "pkg/bbworker/pb", []string{mod + "pkg/store", mod + "pkg/build", mod + "pkg/config", mod + "web", "go.etcd.io/bbolt"}},
		{mod + "cmd/master", []string{mod + "internal/testdeb", mod + "internal/testsshd", mod + "internal/testx509"}},
		{mod + "cmd/worker", []string{"github.com/go-git", mod + "internal/testdeb", mod + "internal/testsshd", mod + "internal/testx509"}},
		// buildbot's msgpack worker protocol is a wire protocol: it knows
		// no store, builds, config or web (issue 20).
		{mod + "pkg/bbworker/msgpack", []string{mod + "pkg/store", mod + "pkg/build", mod + "pkg/config", mod + "web", "go.etcd.io/bbolt"}},
		// The metrics are the master's: the worker links no Prometheus
		// client, and the store none either (it calls hooks).
		{mod + "cmd/worker", []string{"github.com/prometheus", mod + "pkg/metrics"}},
		{mod + "pkg/store", []string{"github.com/prometheus", mod + "pkg/metrics"}},
	}
	// The master's git poller is go-git, in process.
	if !slices.Contains(deps(mod+"cmd/master"), "github.com/go-git/go-git/v5") {
		t.Errorf("cmd/master does not link go-git: its git poller would need a git binary")
	}
	for _, r := range rules {
		for _, d := range deps(r.pkg) {
			for _, f := range r.forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s imports %s", r.pkg, d)
				}
			}
		}
	}
	// The rooms of web (issue 15) never import the server that wires
	// them: web itself, not only its other rooms.
	for _, pkg := range []string{mod + "web/auth", mod + "web/live", mod + "web/api", mod + "web/ui", mod + "pkg/changesource/hooks"} {
		if slices.Contains(deps(pkg), mod+"web") {
			t.Errorf("%s imports %sweb", pkg, mod)
		}
	}
	// Only pkg/store imports bbolt.
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, "go.etcd.io/bbolt") && f[0] != mod+"pkg/store" {
				t.Errorf("%s imports bbolt; only pkg/store may", f[0])
			}
			// Only the pages render HTML (grpc links html/template
			// into everything below pkg/build, so only direct imports
			// count).
			if imp == "html/template" && slices.Contains([]string{mod + "web/api", mod + "web/auth", mod + "web/live", mod + "pkg/changesource/hooks"}, f[0]) {
				t.Errorf("%s imports html/template; only the pages may", f[0])
			}
		}
	}
}

// TestPackageDocs: every package has a doc.go whose first sentence names
// its one job.
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range strings.Fields(string(out)) {
		if filepath.Base(dir) == "e2e" || !strings.Contains(dir, "/") {
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		nonTest := 0
		for _, m := range matches {
			if !strings.HasSuffix(m, "_test.go") {
				nonTest++
			}
		}
		if nonTest == 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "doc.go"))
		if err != nil {
			t.Errorf("%s has no doc.go", dir)
			continue
		}
		if !strings.Contains(string(b), "// Package ") && !strings.Contains(string(b), "// Command ") {
			t.Errorf("%s/doc.go does not start with a package comment", dir)
		}
	}
}
