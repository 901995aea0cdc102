package api

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestBuildsPushedDown checks that a page of builds that the store
// answers (ordered by id, limited, filtered on ids and complete) is the
// same as the generic query in memory over every build gives. Adding
// buildid__ge=0, true of every build, makes a query generic.
func TestBuildsPushedDown(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	idle := must(f.db.WorkerByName("idle-worker"))(t)
	for i := range 30 {
		nb := store.NewBuild{BuilderID: f.runtests.ID, WorkerID: f.worker.ID, MasterID: f.master.ID, StartedAt: t0}
		if i%3 == 0 {
			nb.BuilderID = f.noop.ID
		}
		if i%4 == 0 {
			nb.WorkerID = idle.ID
		}
		if i%7 == 0 {
			nb.BuildRequestID = f.brid
		}
		b := must(f.db.AddBuild(nb))(t)
		if i%5 != 1 {
			check(t, f.db.FinishBuild(b.ID, i%3, t0))
		}
	}
	rt, noop := f.runtests.ID, f.noop.ID
	for _, tc := range []struct {
		path   string
		pushed bool
	}{
		{"/api/v2/builds?limit=5", true},
		{"/api/v2/builds?limit=0", true},
		{"/api/v2/builds?order=-buildid&limit=7&offset=3", true},
		{"/api/v2/builds?order=buildid&limit=7&offset=30", true},
		{"/api/v2/builds?order=-buildid&limit=100", true},
		{"/api/v2/builds?order=-buildid&limit=4&complete=false", true},
		{"/api/v2/builds?order=-buildid&limit=4&complete=true&offset=2", true},
		{fmt.Sprintf("/api/v2/builds?order=-number&limit=3&builderid=%d", noop), true},
		{fmt.Sprintf("/api/v2/builds?order=-buildid&limit=3&workerid=%d&complete=true", idle.ID), true},
		{fmt.Sprintf("/api/v2/builds?limit=3&buildrequestid=%d", f.brid), true},
		{fmt.Sprintf("/api/v2/builds?order=-buildid&limit=10&builderid=%d&workerid=%d&field=buildid&field=number", rt, f.worker.ID), true},
		{fmt.Sprintf("/api/v2/builders/%d/builds?order=-number&limit=20", rt), true},
		{fmt.Sprintf("/api/v2/builders/%d/builds?order=-number&limit=1", noop), true},
		{fmt.Sprintf("/api/v2/builders/%d/builds?order=number&limit=4&offset=2&complete=false&property=owner", rt), true},
		{fmt.Sprintf("/api/v2/builders/%d/builds?limit=4&builderid=%d", rt, noop), false},
		{fmt.Sprintf("/api/v2/buildrequests/%d/builds?order=-buildid&limit=2", f.brid), true},
		{"/api/v2/builds?order=-number&limit=5", false},
		{"/api/v2/builds?order=-buildid", false},
		{"/api/v2/builds?order=-buildid,number&limit=5", false},
		{"/api/v2/builds?limit=5&workerid=0", false},
		{"/api/v2/builds?limit=5&results=0", false},
		{"/api/v2/builds?limit=5&complete=null", false},
	} {
		u := must(url.Parse(tc.path))(t)
		q := must(parseQuery(u.Query(), buildRes))(t)
		var bf store.BuildFilter
		switch {
		case strings.HasPrefix(tc.path, "/api/v2/builders/"):
			bf.BuilderID = rt
			if strings.Contains(tc.path, fmt.Sprintf("/builders/%d/", noop)) {
				bf.BuilderID = noop
			}
		case strings.HasPrefix(tc.path, "/api/v2/buildrequests/"):
			bf.BuildRequestID = f.brid
		}
		if _, pushed := q.buildPage(bf); pushed != tc.pushed {
			t.Errorf("%s: pushed down %v, want %v", tc.path, pushed, tc.pushed)
		}
		_, got := f.get(t, tc.path)
		_, want := f.get(t, tc.path+"&buildid__ge=0")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: store page differs from the generic query (-generic +store):\n%s", tc.path, diff)
		}
		if objs, ok := got["builds"].([]any); !ok || tc.pushed && len(objs) == 0 && !strings.Contains(tc.path, "limit=0") && !strings.Contains(tc.path, "offset=30") {
			t.Errorf("%s: no builds (a case that tests nothing): %v", tc.path, got)
		}
	}
}

// TestBuildRequestsPushedDown is TestBuildsPushedDown for build requests:
// ordered by id, limited, filtered on builderid, buildsetid, claimed and
// complete by the store; buildrequestid__ge=0 makes a query generic.
func TestBuildRequestsPushedDown(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	rt, noop := f.runtests.ID, f.noop.ID
	var bsids []int64
	for i := range 20 {
		builders := []int64{rt}
		if i%3 == 0 {
			builders = append(builders, noop)
		}
		bsid, brids := must2(f.db.AddBuildset(store.NewBuildset{BuilderIDs: builders, Priority: i % 2}))(t)
		bsids = append(bsids, bsid)
		for _, id := range brids {
			switch i % 4 {
			case 1:
				check(t, f.db.ClaimBuildRequest(id, f.master.ID, t0))
			case 2:
				check(t, f.db.ClaimBuildRequest(id, f.master.ID, t0))
				check(t, f.db.CompleteBuildRequest(id, 0, t0))
			case 3:
				check(t, f.db.CompleteBuildRequest(id, 6, t0))
			}
		}
	}
	for _, tc := range []struct {
		path   string
		pushed bool
	}{
		{"/api/v2/buildrequests?limit=5", true},
		{"/api/v2/buildrequests?limit=0", true},
		{"/api/v2/buildrequests?order=-buildrequestid&limit=7&offset=3", true},
		{"/api/v2/buildrequests?order=buildrequestid&limit=7&offset=40", true},
		{"/api/v2/buildrequests?order=-buildrequestid&limit=4&complete=false", true},
		{"/api/v2/buildrequests?order=-buildrequestid&limit=4&claimed=false&complete=false", true},
		{"/api/v2/buildrequests?order=-buildrequestid&limit=4&claimed=true&offset=1", true},
		{fmt.Sprintf("/api/v2/buildrequests?order=-buildrequestid&limit=3&builderid=%d&complete=true", noop), true},
		{fmt.Sprintf("/api/v2/buildrequests?limit=3&buildsetid=%d", bsids[3]), true},
		{fmt.Sprintf("/api/v2/builders/%d/buildrequests?order=-buildrequestid&limit=5&claimed=false", rt), true},
		{fmt.Sprintf("/api/v2/builders/%d/buildrequests?limit=4&builderid=%d", rt, noop), false},
		{"/api/v2/buildrequests?order=-priority&limit=5", false},
		{"/api/v2/buildrequests?order=-buildrequestid", false},
		{"/api/v2/buildrequests?limit=5&results=0", false},
		{"/api/v2/buildrequests?limit=5&builderid=0", false},
	} {
		u := must(url.Parse(tc.path))(t)
		q := must(parseQuery(u.Query(), buildrequestRes))(t)
		var bf store.BuildRequestFilter
		if strings.HasPrefix(tc.path, "/api/v2/builders/") {
			bf.BuilderID = rt
		}
		if _, pushed := q.buildRequestPage(bf); pushed != tc.pushed {
			t.Errorf("%s: pushed down %v, want %v", tc.path, pushed, tc.pushed)
		}
		_, got := f.get(t, tc.path)
		_, want := f.get(t, tc.path+"&buildrequestid__ge=0")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: store page differs from the generic query (-generic +store):\n%s", tc.path, diff)
		}
		if objs, ok := got["buildrequests"].([]any); !ok || tc.pushed && len(objs) == 0 && !strings.Contains(tc.path, "limit=0") && !strings.Contains(tc.path, "offset=40") {
			t.Errorf("%s: no buildrequests (a case that tests nothing): %v", tc.path, got)
		}
	}
}

// TestChangesPushedDown is TestBuildsPushedDown for /changes: ordered by
// changeid and limited by the store; changeid__ge=0 makes a query generic.
func TestChangesPushedDown(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for i := range 12 {
		must(f.db.AddChange(store.Change{Author: "a", Revision: fmt.Sprintf("%040d", i), Branch: "main", When: t0}))(t)
	}
	for _, tc := range []struct {
		path   string
		pushed bool
	}{
		{"/api/v2/changes?limit=5", true},
		{"/api/v2/changes?limit=0", true},
		{"/api/v2/changes?order=-changeid&limit=4&offset=3", true},
		{"/api/v2/changes?order=changeid&limit=4&offset=100", true},
		{"/api/v2/changes?order=-changeid&limit=50&field=changeid&field=revision", true},
		{"/api/v2/changes?order=-changeid", false},
		{"/api/v2/changes?order=-when_timestamp&limit=3", false},
		{"/api/v2/changes?limit=3&branch=main", true},
		{"/api/v2/changes?limit=3&branch=main&author=a", false},
		{"/api/v2/changes?limit=3&branch=null", false},
	} {
		u := must(url.Parse(tc.path))(t)
		q := must(parseQuery(u.Query(), changeRes))(t)
		if _, pushed := q.changePage(); pushed != tc.pushed {
			t.Errorf("%s: pushed down %v, want %v", tc.path, pushed, tc.pushed)
		}
		_, got := f.get(t, tc.path)
		_, want := f.get(t, tc.path+"&changeid__ge=0")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: store page differs from the generic query (-generic +store):\n%s", tc.path, diff)
		}
		if objs, ok := got["changes"].([]any); !ok || tc.pushed && len(objs) == 0 && !strings.Contains(tc.path, "limit=0") && !strings.Contains(tc.path, "offset=100") {
			t.Errorf("%s: no changes (a case that tests nothing): %v", tc.path, got)
		}
	}
}

// TestBuildsetsPushedDown is TestBuildsPushedDown for /buildsets: ordered
// by bsid, limited and filtered on complete by the store; bsid__ge=0 makes
// a query generic.
func TestBuildsetsPushedDown(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for i := range 12 {
		_, brids := must2(f.db.AddBuildset(store.NewBuildset{BuilderIDs: []int64{f.runtests.ID}}))(t)
		if i%3 == 0 {
			check(t, f.db.CompleteBuildRequest(brids[f.runtests.ID], 6, t0))
		}
	}
	for _, tc := range []struct {
		path   string
		pushed bool
	}{
		{"/api/v2/buildsets?limit=5", true},
		{"/api/v2/buildsets?limit=0", true},
		{"/api/v2/buildsets?order=-bsid&limit=4&offset=3", true},
		{"/api/v2/buildsets?order=bsid&limit=4&offset=100", true},
		{"/api/v2/buildsets?order=-bsid&limit=3&complete=true", true},
		{"/api/v2/buildsets?order=-bsid&limit=3&complete=false&offset=1", true},
		{"/api/v2/buildsets?order=-bsid", false},
		{"/api/v2/buildsets?order=-submitted_at&limit=3", false},
		{"/api/v2/buildsets?limit=3&results=6", false},
	} {
		u := must(url.Parse(tc.path))(t)
		q := must(parseQuery(u.Query(), buildsetRes))(t)
		if _, pushed := q.buildsetPage(); pushed != tc.pushed {
			t.Errorf("%s: pushed down %v, want %v", tc.path, pushed, tc.pushed)
		}
		_, got := f.get(t, tc.path)
		_, want := f.get(t, tc.path+"&bsid__ge=0")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: store page differs from the generic query (-generic +store):\n%s", tc.path, diff)
		}
		if objs, ok := got["buildsets"].([]any); !ok || tc.pushed && len(objs) == 0 && !strings.Contains(tc.path, "limit=0") && !strings.Contains(tc.path, "offset=100") {
			t.Errorf("%s: no buildsets (a case that tests nothing): %v", tc.path, got)
		}
	}
}
