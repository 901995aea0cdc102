package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestMastersSeveral: with several masters in the store, /api/v2/masters
// lists each with buildbot's fields, its state and which one leads (gbb's
// leader); /api/v2/masters/N gives one; the masters page shows each,
// active or not, leader, last seen, its workers and running builds, with
// no script, and the nav links it.
func TestMastersSeveral(t *testing.T) {
	t.Parallel()
	db := teststore.Open(t)
	a := must(db.EnsureMaster("ci1:/var/gbb"))(t)
	b := must(db.EnsureMaster("ci2:/var/gbb"))(t)
	c := must(db.EnsureMaster("ci3:/var/gbb"))(t)
	seen := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	check(t, db.SetMasterActive(c.ID, false, seen))
	bl := must(db.EnsureBuilder("b"))(t)
	w := must(db.EnsureWorker("w"))(t)
	check(t, db.WorkerConnected(w.ID, b.ID, nil))
	_, brids := must2(db.AddBuildset(store.NewBuildset{Reason: "r", BuilderIDs: []int64{bl.ID}}))(t)
	check(t, db.ClaimBuildRequest(brids[bl.ID], b.ID, time.Now()))
	must(db.AddBuild(store.NewBuild{BuilderID: bl.ID, BuildRequestID: brids[bl.ID], WorkerID: w.ID, MasterID: b.ID}))(t)

	s := New(Config{Store: db, MasterID: a.ID, MasterName: "ci1:/var/gbb", Leader: func() int64 { return b.ID }})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	f := &fixture{db: db, srv: srv}

	objs, meta := f.getOK(t, "/api/v2/masters", "masters")
	if meta["total"] != float64(3) {
		t.Errorf("meta %v", meta)
	}
	type row struct {
		ID             int64
		Active, Leader bool
		Keys           []string
	}
	var got []row
	for _, o := range objs {
		got = append(got, row{int64(o["masterid"].(float64)), o["active"].(bool), o["leader"].(bool), keys(o)})
	}
	fields := []string{"active", "last_active", "leader", "masterid", "name", "worker_tls_not_after"}
	want := []row{{a.ID, true, false, fields}, {b.ID, true, true, fields}, {c.ID, false, false, fields}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/api/v2/masters (-want +got):\n%s", diff)
	}
	if objs[2]["last_active"] != float64(seen.Unix()) || objs[2]["name"] != "ci3:/var/gbb" {
		t.Errorf("stopped master: %v", objs[2])
	}
	one, _ := f.getOK(t, "/api/v2/masters/2", "masters")
	if len(one) != 1 || one[0]["masterid"] != float64(b.ID) || one[0]["leader"] != true {
		t.Errorf("/api/v2/masters/2 = %v", one)
	}
	if status, _ := f.get(t, "/api/v2/masters/9"); status != http.StatusNotFound {
		t.Errorf("/api/v2/masters/9: status %d", status)
	}
	if objs, _ := f.getOK(t, "/api/v2/masters?active=false", "masters"); len(objs) != 1 || objs[0]["masterid"] != float64(c.ID) {
		t.Errorf("/api/v2/masters?active=false = %v", objs)
	}

	resp := must(http.Get(srv.URL + "/masters"))(t)
	body := string(must(io.ReadAll(resp.Body))(t))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/masters: %s", resp.Status)
	}
	rowRe := regexp.MustCompile(`(?s)<tr id="master-(\d+)" class="master-row (\w+)">(.*?)</tr>`)
	var rows []string
	for _, m := range rowRe.FindAllStringSubmatch(body, -1) {
		text := regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[3], "")
		rows = append(rows, m[1]+" "+m[2]+": "+strings.Join(strings.Fields(text), " "))
	}
	wantRows := []string{
		"1 active: 1 ci1:/var/gbb (this master) active",
		"2 active: 2 ci2:/var/gbb active leader",
		"3 inactive: 3 ci3:/var/gbb stopped 2026-12-07 03:00:00 UTC",
	}
	for i, w := range wantRows {
		if i >= len(rows) || !strings.HasPrefix(rows[i], w) {
			t.Errorf("masters page row %d = %q, want it to start %q\n%s", i, rows, w, body)
		}
	}
	if len(rows) == 3 && (!strings.HasSuffix(rows[1], " 1 1") || !strings.HasSuffix(rows[0], " 0 0")) {
		t.Errorf("workers and running builds: %q", rows)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
		t.Error("the masters page has inline script (the CSP forbids it)")
	}
	resp = must(http.Get(srv.URL + "/workers"))(t)
	body = string(must(io.ReadAll(resp.Body))(t))
	resp.Body.Close()
	if !slices.Contains(regexp.MustCompile(`href="([^"]*)"`).FindAllString(body, -1), `href="./masters"`) {
		t.Errorf("the nav does not link the masters page:\n%s", body)
	}
}
