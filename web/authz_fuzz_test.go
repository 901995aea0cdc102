package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
)

// FuzzControlBody sends any body as a JSON-RPC call to each control
// endpoint, as each kind of user of testAuthz, and checks the one-parse
// rule: a call that is refused changes nothing; a call that is done was
// allowed to its user, and is exactly the call that a strict reading of
// the body (json.Unmarshal, which refuses anything after the value)
// gives: the same method, target and reason, and a force owned by its
// user.
func FuzzControlBody(f *testing.F) {
	fx := newAuthServer(f, testAuthz)
	sess := fx.login(f, "bob", "pw-bob")
	h := fx.s.Handler()
	targets := []struct {
		path    string
		methods map[string]string // method -> the controller call it makes, with %q for the reason
	}{
		{fmt.Sprintf("/api/v2/builds/%d", fx.running.ID), map[string]string{"stop": fmt.Sprintf("stop %d %%q", fx.running.ID), "rebuild": fmt.Sprintf("rebuild %d", fx.running.ID)}},
		{fmt.Sprintf("/api/v2/builders/runtests/builds/%d", fx.running.Number), map[string]string{"stop": fmt.Sprintf("stop %d %%q", fx.running.ID), "rebuild": fmt.Sprintf("rebuild %d", fx.running.ID)}},
		{fmt.Sprintf("/api/v2/buildrequests/%d", fx.brid), map[string]string{"cancel": fmt.Sprintf("cancel %d %%q", fx.brid)}},
		{fmt.Sprintf("/api/v2/workers/%d", fx.worker.ID), map[string]string{
			"pause": fmt.Sprintf("pause %d %%q", fx.worker.ID), "unpause": fmt.Sprintf("unpause %d", fx.worker.ID),
			"stop": fmt.Sprintf("graceful %d", fx.worker.ID), "graceful": fmt.Sprintf("graceful %d", fx.worker.ID),
			"kill": fmt.Sprintf("kill %d %%q", fx.worker.ID)}},
		{"/api/v2/forceschedulers/force-runtests", map[string]string{"force": ""}},
		{"/api/v2/forceschedulers/force-all", map[string]string{"force": ""}},
	}
	type asker struct {
		name    string // the owner of its forces; "" for anonymous
		mayCtl  bool   // may stop, rebuild, cancel and act on workers
		set     func(*http.Request)
		session bool
	}
	askers := []asker{
		{"", false, func(*http.Request) {}, false},
		{"bob", false, func(r *http.Request) { r.SetBasicAuth("bob", "pw-bob") }, false},
		{"root", true, func(r *http.Request) { r.SetBasicAuth("root", "pw-root") }, false},
		{"bob", false, func(r *http.Request) {
			r.AddCookie(sess)
			r.Header.Set(auth.CSRFHeader, fx.s.acc().auth.Session(sess.Value).CSRF)
		}, true},
	}
	for _, body := range []string{
		rpcBody("stop", `{"reason":"x"}`),
		rpcBody("stop", `{"reason":"x"}`) + " x",
		rpcBody("kill", `{"reason":"x"}`) + "\n{}",
		rpcBody("force", `{"username":"alice","builderNames":["noop"]}`) + " x",
		rpcBody("force", `{"builderid":2}`),
		`{"jsonrpc":"2.0","method":"pause","METHOD":"kill","id":1,"params":{}}`,
		`{"jsonrpc":"2.0","method":"cancel","method":"stop","id":1,"params":{"reason":5}}`,
		`[{"jsonrpc":"2.0","method":"stop","id":1,"params":{}}]`,
		"",
	} {
		for i := range targets {
			for j := range askers {
				f.Add(uint8(i), uint8(j), []byte(body))
			}
		}
	}
	f.Fuzz(func(t *testing.T, ti, ai uint8, body []byte) {
		target, who := targets[int(ti)%len(targets)], askers[int(ai)%len(askers)]
		calls, sets := len(fx.calls()), len(must(fx.db.Buildsets(nil))(t))
		req := httptest.NewRequest("POST", target.path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		who.set(req)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		newCalls := fx.calls()[calls:]
		newSets := must(fx.db.Buildsets(nil))(t)[sets:]
		if rec.Code < 200 || rec.Code > 299 {
			if len(newCalls) > 0 || len(newSets) > 0 {
				t.Fatalf("refused %d %s, yet acted: calls %q, %d buildsets", rec.Code, rec.Body, newCalls, len(newSets))
			}
			return
		}
		var ref api.RPCRequest
		if err := json.Unmarshal(body, &ref); err != nil || ref.JSONRPC != "2.0" || ref.Params == nil {
			t.Fatalf("done (%d %s), but a strict reading of the body fails: %v", rec.Code, rec.Body, err)
		}
		call, ok := target.methods[ref.Method]
		if !ok {
			t.Fatalf("done a method %q that %s does not have", ref.Method, target.path)
		}
		var reason string
		if raw, ok := ref.Params["reason"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &reason); err != nil {
				t.Fatalf("done with a reason %s that is not a string", raw)
			}
		}
		if ref.Method != "force" {
			if !who.mayCtl {
				t.Fatalf("%q did %s on %s", who.name, ref.Method, target.path)
			}
			want := call
			if strings.Contains(call, "%q") {
				want = fmt.Sprintf(call, reason)
			}
			if len(newCalls) != 1 || newCalls[0] != want || len(newSets) > 0 {
				t.Fatalf("done %q and %d buildsets, want exactly %q", newCalls, len(newSets), want)
			}
			return
		}
		if len(newCalls) > 0 || len(newSets) != 1 {
			t.Fatalf("force made calls %q and %d buildsets, want one buildset", newCalls, len(newSets))
		}
		bs := newSets[0]
		if who.name == "" || api.PropString(bs.Properties, "owner") != who.name {
			t.Fatalf("%q forced a buildset owned by %q", who.name, api.PropString(bs.Properties, "owner"))
		}
		if reason != "" && bs.Reason != reason {
			t.Fatalf("forced with reason %q, want %q", bs.Reason, reason)
		}
		if !who.mayCtl {
			brs := must(fx.db.BuildRequests(storeFilter(bs.ID)))(t)
			if slices.ContainsFunc(brs, func(br store.BuildRequest) bool { return br.BuilderID != fx.runtests.ID }) {
				t.Fatalf("%q forced a builder other than runtests: %+v", who.name, brs)
			}
		}
	})
}
