package hooks

import (
	"net/url"
	"testing"

	"github.com/gbb-ci/gbb/internal/teststore"
)

// A hook configured with a codebase sets it on the changes it makes, and a
// request's ?codebase= overrides it, as buildbot's hook option and request
// argument.
func TestHookCodebaseOption(t *testing.T) {
	t.Parallel()
	db := teststore.Open(t)
	f := &fixture{db: db, srv: hookServerWith(db, map[string]Config{"base": {Codebase: "lib"}})}
	t.Cleanup(f.srv.Close)
	form := url.Values{"author": {"Jane <jane@example.org>"}, "revision": {"abc"}, "branch": {"main"}}
	ctype := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, tc := range []struct{ path, want string }{
		{"/change_hook/base", "lib"},
		{"/change_hook/base?codebase=app", "app"},
	} {
		status, reply := f.hookPost(t, tc.path, ctype, []byte(form.Encode()))
		if status != 200 {
			t.Fatalf("%s: %d %v", tc.path, status, reply)
		}
		got := f.storedChanges(t, reply)
		if len(got) != 1 || got[0].Codebase != tc.want {
			t.Errorf("%s: changes %+v, want one of codebase %q", tc.path, got, tc.want)
		}
	}
}
