package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// recordingForcer is testForcer over the real store, with a param, that
// keeps every ForceRequest it is given.
type recordingForcer struct {
	testForcer
	mu  sync.Mutex
	got []scheduler.ForceRequest // guarded by mu
}

func (f *recordingForcer) Force(ctx context.Context, name string, req scheduler.ForceRequest) (int64, map[int64]int64, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.mu.Unlock()
	return f.testForcer.Force(ctx, name, req)
}

// since returns the requests forced since n of them were.
func (f *recordingForcer) since(n int) []scheduler.ForceRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got[n:])
}

func (f *recordingForcer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// TestForceFormAndRPCDecodeAlike sends each force both as a page's form
// and as the JSON-RPC call that says the same, as bob (who may force
// runtests only) and root (who may force all): both must reach the one
// decode, so they get the same answer and the Forcer the same
// ForceRequest; and the builders that authz logs it checked are exactly
// the builders forced. A bad builderid is refused 400 by the decode,
// before authz, for a form as for a call.
func TestForceFormAndRPCDecodeAlike(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	forcer := &recordingForcer{testForcer: testForcer{db: f.db, scheds: []scheduler.ForceInfo{
		{Name: "force-runtests", BuilderNames: []string{"runtests"}, Params: []scheduler.ForceParam{{Name: "note", Type: "string"}}},
		{Name: "force-all", BuilderNames: []string{"runtests", "noop"}, Params: []scheduler.ForceParam{{Name: "note", Type: "string"}}},
	}}}
	var users []config.User
	for _, u := range []struct{ name, group string }{{"bob", "devs"}, {"root", "admins"}} {
		h := string(must(bcrypt.GenerateFromPassword([]byte("pw-"+u.name), bcrypt.MinCost))(t))
		users = append(users, config.User{Username: u.name, PasswordHash: h, Groups: []string{u.group}})
	}
	logs := &syncBuffer{}
	s := New(Config{
		Store: f.db, Forcer: forcer, MasterID: f.master.ID,
		Auth:   config.Auth{Type: "users", Users: users, SessionTimeout: config.DefaultSessionTimeout},
		Authz:  testAuthz,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	// authorized returns the builders of the "authorized" log lines after
	// the first n bytes of the log, and the log's length.
	authorized := func(n int) ([][]string, int) {
		all := logs.String()
		var out [][]string
		for _, line := range strings.Split(all[n:], "\n") {
			var rec struct {
				Msg      string
				Builders []string
			}
			if line == "" || json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "authorized" {
				continue
			}
			out = append(out, rec.Builders)
		}
		return out, len(all)
	}
	// forcedBuilders names the builders of the latest buildset.
	forcedBuilders := func(t *testing.T) []string {
		bss := must(f.db.Buildsets(nil))(t)
		var names []string
		for _, br := range must(f.db.BuildRequests(storeFilter(bss[len(bss)-1].ID)))(t) {
			names = append(names, must(f.db.Builder(br.BuilderID))(t).Name)
		}
		slices.Sort(names)
		return names
	}

	type outcome struct {
		Status   int
		Forced   []scheduler.ForceRequest
		Checked  [][]string // the builders authz checked
		Builders []string   // the builders of the buildset made
	}
	send := func(t *testing.T, who string, req *http.Request, form bool) outcome {
		t.Helper()
		req.SetBasicAuth(who, "pw-"+who)
		n, logLen := forcer.count(), len(logs.String())
		sets := len(must(f.db.Buildsets(nil))(t))
		resp := must(noRedirect.Do(req))(t)
		body := string(must(io.ReadAll(resp.Body))(t))
		resp.Body.Close()
		o := outcome{Status: resp.StatusCode, Forced: forcer.since(n)}
		o.Checked, _ = authorized(logLen)
		if len(must(f.db.Buildsets(nil))(t)) > sets {
			if want := map[bool]int{true: http.StatusSeeOther, false: http.StatusOK}[form]; resp.StatusCode != want {
				t.Fatalf("made a buildset but answered %d, want %d: %s", resp.StatusCode, want, body)
			}
			o.Status = http.StatusOK // a form's success is a redirect
			o.Builders = forcedBuilders(t)
		}
		return o
	}

	runtests, noop := f.runtests.ID, f.noop.ID
	for _, tc := range []struct {
		name      string
		scheduler string
		form      url.Values // the page's form, posted to /force/SCHEDULER
		params    string     // the JSON-RPC call's params that say the same
		// what bob and root get: the status (200 for done) and the
		// builders forced
		bob, root int
	}{
		{"all of a scheduler", "force-all", url.Values{"reason": {"r"}}, `{"reason":"r"}`, 403, 200},
		{"one builder by id", "force-all", url.Values{"builderid": {fmt.Sprint(runtests)}, "branch": {"b"}}, fmt.Sprintf(`{"builderid":%d,"branch":"b"}`, runtests), 200, 200},
		{"one builder by id as a string", "force-all", url.Values{"builderid": {fmt.Sprint(runtests)}}, fmt.Sprintf(`{"builderid":"%d"}`, runtests), 200, 200},
		{"another builder by id", "force-all", url.Values{"builderid": {fmt.Sprint(noop)}}, fmt.Sprintf(`{"builderid":%d}`, noop), 403, 200},
		{"a builder not of the scheduler", "force-runtests", url.Values{"builderid": {fmt.Sprint(noop)}}, fmt.Sprintf(`{"builderid":%d}`, noop), 403, 400},
		{"an unknown builder id", "force-runtests", url.Values{"builderid": {"999"}}, `{"builderid":999}`, 400, 400},
		{"a bad builderid", "force-all", url.Values{"builderid": {"runtests"}}, `{"builderid":"runtests"}`, 400, 400},
		{"a bad builderid of a scheduler bob may force", "force-runtests", url.Values{"builderid": {"1x"}}, `{"builderid":"1x"}`, 400, 400},
		{"a param and an owner claimed", "force-runtests", url.Values{"note": {"n"}, "username": {"mallory"}}, `{"note":"n","username":"mallory"}`, 200, 200},
		{"a bad param", "force-runtests", url.Values{"reason": {"forbidden"}}, `{"reason":"forbidden"}`, 400, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, who := range []struct {
				name string
				want int
			}{{"bob", tc.bob}, {"root", tc.root}} {
				byForm := send(t, who.name, formRequest(t, srv.URL+"/force/"+tc.scheduler, tc.form), true)
				rpc := must(http.NewRequest("POST", srv.URL+"/api/v2/forceschedulers/"+tc.scheduler, strings.NewReader(rpcBody("force", tc.params))))(t)
				rpc.Header.Set("Content-Type", "application/json")
				byRPC := send(t, who.name, rpc, false)
				if diff := cmp.Diff(byRPC, byForm); diff != "" {
					t.Errorf("%s: the form's force (+) differs from the JSON-RPC's (-):\n%s", who.name, diff)
				}
				if byRPC.Status != who.want {
					t.Errorf("%s: answered %d, want %d", who.name, byRPC.Status, who.want)
				}
				for _, fr := range byRPC.Forced {
					if fr.Owner != who.name {
						t.Errorf("%s forced a build owned by %q", who.name, fr.Owner)
					}
				}
				if byRPC.Status == http.StatusOK {
					if len(byRPC.Checked) != 1 || !slices.Equal(slices.Sorted(slices.Values(byRPC.Checked[0])), byRPC.Builders) {
						t.Errorf("%s: authz checked %q, forced %q", who.name, byRPC.Checked, byRPC.Builders)
					}
				}
			}
		})
	}

	// A builder page's form forces its builder, whatever its builderid
	// says, and authz checks that builder; a bad builderid is still
	// refused by the decode.
	for _, tc := range []struct {
		builder string
		form    url.Values
		want    int
		checked [][]string
	}{
		{"runtests", url.Values{"builderid": {fmt.Sprint(noop)}}, 200, [][]string{{"runtests"}}},
		{"noop", url.Values{"builderid": {fmt.Sprint(runtests)}}, 403, nil},
		{"runtests", url.Values{"builderid": {"noop"}}, 400, nil},
		{"nosuch", url.Values{}, 404, nil},
	} {
		o := send(t, "bob", formRequest(t, srv.URL+"/builders/"+tc.builder+"/force/force-all", tc.form), true)
		if o.Status != tc.want || !cmp.Equal(o.Checked, tc.checked) {
			t.Errorf("bob's force on %s's page with %v: %d, checked %q; want %d, %q", tc.builder, tc.form, o.Status, o.Checked, tc.want, tc.checked)
		}
		if o.Status == http.StatusOK && !slices.Equal(o.Builders, []string{tc.builder}) {
			t.Errorf("bob's force on %s's page forced %q", tc.builder, o.Builders)
		}
	}
}
