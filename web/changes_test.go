package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
)

// changesFixture adds three changes to f's store, and a buildset of the
// last two with a build of runtests.
type changesFixture struct {
	*fixture
	c1, c2, c3 store.Change
	bsid       int64
	build      store.Build
}

func newChangesFixture(t *testing.T) *changesFixture {
	t.Helper()
	f := &changesFixture{fixture: newTestServer(t)}
	db := f.db
	f.c1 = must(db.AddChange(store.Change{
		Author: "Jane <jane@example.org>", Committer: "Joe <joe@example.org>", Comments: "first",
		Branch: "main", Revision: "aaa", Repository: "https://example.org/r.git", Project: "p", Category: "push",
		RevLink: "https://example.org/r/aaa", When: t0, Files: []string{"a.go", "b.go"},
		Properties: store.Properties{"event": {Value: json.RawMessage(`"push"`), Source: "Change"}},
	}))(t)
	f.c2 = must(db.AddChange(store.Change{Author: "Ann", Comments: "second", Branch: "dev", Revision: "bbb", Repository: "https://example.org/r.git", Project: "p", When: t0.Add(time.Minute)}))(t)
	f.c3 = must(db.AddChange(store.Change{Author: "Jane <jane@example.org>", Comments: "third", Branch: "main", Revision: "ccc", Repository: "https://example.org/r.git", Project: "q", When: t0.Add(2 * time.Minute)}))(t)
	bsid, brids, err := db.AddBuildset(store.NewBuildset{
		Reason: "scheduler", SchedulerName: "all",
		SourceStamps: []store.SourceStamp{{Branch: "main", Revision: "ccc", Repository: "https://example.org/r.git", Project: "q"}},
		ChangeIDs:    []int64{f.c1.ID, f.c3.ID},
		BuilderIDs:   []int64{f.runtests.ID},
	})
	check(t, err)
	f.bsid = bsid
	f.build = must(db.AddBuild(store.NewBuild{BuilderID: f.runtests.ID, BuildRequestID: brids[f.runtests.ID], WorkerID: f.worker.ID, MasterID: f.master.ID}))(t)
	return f
}

func TestChangesShapes(t *testing.T) {
	t.Parallel()
	f := newChangesFixture(t)
	var want map[string][]string
	check(t, json.Unmarshal(must(os.ReadFile("testdata/keys.json"))(t), &want))
	for _, tt := range []struct{ path, plural string }{
		{"/api/v2/changes", "changes"},
		{fmt.Sprintf("/api/v2/changes/%d", f.c1.ID), "changes"},
		{"/api/v2/sourcestamps", "sourcestamps"},
		{"/api/v2/schedulers", "schedulers"},
		{"/api/v2/schedulers/2", "schedulers"},
	} {
		objs, _ := f.getOK(t, tt.path, tt.plural)
		if len(objs) == 0 {
			t.Fatalf("GET %s: no %s", tt.path, tt.plural)
		}
		for _, o := range objs {
			if diff := cmp.Diff(want[tt.plural], keys(o)); diff != "" {
				t.Errorf("GET %s: keys (-buildbot +gbb):\n%s", tt.path, diff)
			}
			if tt.plural == "changes" {
				if diff := cmp.Diff(want["sourcestamps"], keys(o["sourcestamp"].(map[string]any))); diff != "" {
					t.Errorf("GET %s: sourcestamp keys:\n%s", tt.path, diff)
				}
			}
			if tt.plural == "schedulers" {
				if diff := cmp.Diff(want["masters"], keys(o["master"].(map[string]any))); diff != "" {
					t.Errorf("GET %s: master keys:\n%s", tt.path, diff)
				}
			}
		}
	}
}

func TestChangeValues(t *testing.T) {
	t.Parallel()
	f := newChangesFixture(t)
	status, body := f.get(t, fmt.Sprintf("/api/v2/changes/%d", f.c1.ID))
	ss := must(f.db.SourceStamp(f.c1.SourceStampID))(t)
	want := map[string]any{
		"changes": []any{map[string]any{
			"author": "Jane <jane@example.org>", "committer": "Joe <joe@example.org>", "comments": "first",
			"branch": "main", "revision": "aaa", "revlink": "https://example.org/r/aaa",
			"repository": "https://example.org/r.git", "project": "p", "codebase": "", "category": "push",
			"changeid": float64(f.c1.ID), "when_timestamp": float64(t0.Unix()),
			"files": []any{"a.go", "b.go"}, "parent_changeids": []any{},
			"properties": map[string]any{"event": []any{"push", "Change"}},
			"sourcestamp": map[string]any{
				"ssid": float64(ss.ID), "branch": "main", "revision": "aaa", "repository": "https://example.org/r.git",
				"project": "p", "codebase": "", "patch": nil, "created_at": float64(ss.CreatedAt.Unix()),
			},
		}},
		"meta": map[string]any{},
	}
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}
	// Empty optional fields are null, as buildbot's.
	objs, _ := f.getOK(t, fmt.Sprintf("/api/v2/changes/%d", f.c2.ID), "changes")
	for _, k := range []string{"committer", "category", "revlink"} {
		if objs[0][k] != nil {
			t.Errorf("change 2: %s = %v, want null", k, objs[0][k])
		}
	}

	m := must(f.db.Masters())(t)[0]
	scheds, _ := f.getOK(t, "/api/v2/schedulers/1", "schedulers")
	if diff := cmp.Diff(map[string]any{
		"schedulerid": float64(1), "name": "all", "enabled": true,
		"master": map[string]any{"masterid": float64(f.master.ID), "name": "master-1", "active": m.Active, "last_active": float64(m.LastSeen.Unix())},
	}, scheds[0]); diff != "" {
		t.Errorf("scheduler 1 (-want +got):\n%s", diff)
	}
}

func TestChangePaths(t *testing.T) {
	t.Parallel()
	f := newChangesFixture(t)
	bsSS := must(f.db.Buildset(f.bsid))(t).SourceStamps[0]
	allSS := []int64{}
	for _, ss := range must(f.db.Buildsets(nil))(t) {
		for _, s := range ss.SourceStamps {
			allSS = append(allSS, s.ID)
		}
	}
	for _, c := range []store.Change{f.c1, f.c2, f.c3} {
		allSS = append(allSS, c.SourceStampID)
	}
	allSS = slices.Compact(sortedIDs(allSS))
	// The buildset built for c1 and c3 has c3's source: one sourcestamp,
	// as buildbot's, which its console and grid join builds to changes by.
	if bsSS.ID != f.c3.SourceStampID {
		t.Errorf("buildset's sourcestamp %d, its change's %d: want one", bsSS.ID, f.c3.SourceStampID)
	}
	tests := []struct {
		path, plural, field string
		want                []int64
	}{
		{"/api/v2/changes", "changes", "changeid", []int64{f.c1.ID, f.c2.ID, f.c3.ID}},
		{"/api/v2/changes?branch=main", "changes", "changeid", []int64{f.c1.ID, f.c3.ID}},
		{"/api/v2/changes?branch__ne=main", "changes", "changeid", []int64{f.c2.ID}},
		{"/api/v2/changes?author__contains=jane&project=q", "changes", "changeid", []int64{f.c3.ID}},
		{"/api/v2/changes?order=-changeid&limit=2", "changes", "changeid", []int64{f.c3.ID, f.c2.ID}},
		{"/api/v2/changes?files__contains=b.go", "changes", "changeid", []int64{f.c1.ID}},
		{fmt.Sprintf("/api/v2/changes?when_timestamp__gt=%d", t0.Unix()), "changes", "changeid", []int64{f.c2.ID, f.c3.ID}},
		{"/api/v2/changes?revision=bbb", "changes", "changeid", []int64{f.c2.ID}},
		{fmt.Sprintf("/api/v2/buildsets/%d/changes", f.bsid), "changes", "changeid", []int64{f.c1.ID, f.c3.ID}},
		{fmt.Sprintf("/api/v2/builds/%d/changes", f.build.ID), "changes", "changeid", []int64{f.c1.ID, f.c3.ID}},
		{fmt.Sprintf("/api/v2/builders/runtests/builds/%d/changes", f.build.Number), "changes", "changeid", []int64{f.c1.ID, f.c3.ID}},
		{fmt.Sprintf("/api/v2/builds/%d/changes", f.ok.ID), "changes", "changeid", []int64{}},
		{fmt.Sprintf("/api/v2/sourcestamps/%d/changes", f.c2.SourceStampID), "changes", "changeid", []int64{f.c2.ID}},
		{fmt.Sprintf("/api/v2/sourcestamps/%d/changes", bsSS.ID), "changes", "changeid", []int64{f.c3.ID}},
		{"/api/v2/sourcestamps?order=ssid", "sourcestamps", "ssid", allSS},
		{fmt.Sprintf("/api/v2/sourcestamps?revision=%s", "ccc"), "sourcestamps", "ssid", []int64{f.c3.SourceStampID}},
		{"/api/v2/schedulers", "schedulers", "schedulerid", []int64{1, 2}},
		{"/api/v2/schedulers?name=force-runtests", "schedulers", "schedulerid", []int64{2}},
	}
	for _, tt := range tests {
		objs, meta := f.getOK(t, tt.path, tt.plural)
		if diff := cmp.Diff(tt.want, ints(objs, tt.field)); diff != "" {
			t.Errorf("GET %s: %s (-want +got):\n%s", tt.path, tt.field, diff)
		}
		if tt.path == "/api/v2/changes?order=-changeid&limit=2" && meta["total"] != float64(3) {
			t.Errorf("GET %s: total %v, want 3", tt.path, meta["total"])
		}
	}
	for _, path := range []string{
		"/api/v2/changes/999", "/api/v2/changes/x", "/api/v2/schedulers/99",
		"/api/v2/buildsets/999/changes", "/api/v2/builds/999/changes", "/api/v2/sourcestamps/999/changes",
	} {
		if status, body := f.get(t, path); status != http.StatusNotFound {
			t.Errorf("GET %s: status %d: %v", path, status, body)
		}
	}
	if status, body := f.get(t, "/api/v2/changes?colour=red"); status != http.StatusBadRequest {
		t.Errorf("unknown filter: status %d: %v", status, body)
	}
}

func sortedIDs(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestChangeParentIDs: parent_changeids is the previous change of the same
// branch, repository, project and codebase, as buildbot's; it used to be
// always [].
func TestChangeParentIDs(t *testing.T) {
	t.Parallel()
	f := newChangesFixture(t)
	c4 := must(f.db.AddChange(store.Change{Author: "Ann", Comments: "fourth", Branch: "main", Revision: "ddd", Repository: "https://example.org/r.git", Project: "p"}))(t)
	list, _ := f.getOK(t, "/api/v2/changes", "changes")
	got := map[string]any{}
	for _, c := range list {
		got[c["revision"].(string)] = c["parent_changeids"]
	}
	want := map[string]any{"aaa": []any{}, "bbb": []any{}, "ccc": []any{}, "ddd": []any{float64(f.c1.ID)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parent_changeids by revision (-want +got):\n%s", diff)
	}
	one, _ := f.getOK(t, fmt.Sprintf("/api/v2/changes/%d", c4.ID), "changes")
	if diff := cmp.Diff([]any{float64(f.c1.ID)}, one[0]["parent_changeids"]); diff != "" {
		t.Errorf("/changes/%d parent_changeids (-want +got):\n%s", c4.ID, diff)
	}
}
