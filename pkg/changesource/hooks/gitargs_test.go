package hooks

import (
	"net/url"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/pkg/store"
)

// TestHookRefusesGitOptions: a change whose branch, revision or repository
// git would read as an option (a build gives them to git fetch on a
// worker, where --upload-pack=CMD runs CMD), or that holds a control
// character, is refused with a 400 that says why, and nothing is stored;
// branch names with dashes inside and slashes are taken.
func TestHookRefusesGitOptions(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	form := func(kv ...string) (map[string]string, []byte) {
		v := url.Values{"author": {"a"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(v.Encode())
	}
	push := strings.Replace(string(fixtureFile(t, "github_push.json")), `"ref": "refs/heads/main"`, `"ref": "refs/heads/--upload-pack=touch /tmp/x;git-upload-pack"`, 1)
	if !strings.Contains(push, "--upload-pack") {
		t.Fatal("the fixture has no ref to replace")
	}
	type req struct {
		name, path string
		hdr        map[string]string
		body       []byte
		msg        string
	}
	var reqs []req
	add := func(name, path, msg string, hdr map[string]string, body []byte) {
		reqs = append(reqs, req{name, path, hdr, body, msg})
	}
	h, b := form("branch", "--upload-pack=touch /tmp/x;git-upload-pack")
	add("base form branch", "/change_hook/base", `branch "--upload-pack=touch /tmp/x;git-upload-pack" starts with "-"`, h, b)
	h, b = form("revision", "--output=/tmp/x")
	add("base form revision", "/change_hook/base", `revision "--output=/tmp/x" starts with "-"`, h, b)
	h, b = form("repository", "-uhttp://x")
	add("base form repository", "/change_hook/base", `repository "-uhttp://x" starts with "-"`, h, b)
	h, b = form("branch", "main\x00x")
	add("base form NUL", "/change_hook/base", `branch "main\x00x" holds the control character U+0000`, h, b)
	add("base json, second change", "/change_hook/base", `change 2: branch "-x" starts with "-"`,
		map[string]string{"Content-Type": "application/json"}, []byte(`[{"author": "a", "branch": "ok"}, {"author": "b", "branch": "-x"}]`))
	add("github push", "/change_hook/github", `branch "--upload-pack=touch /tmp/x;git-upload-pack" starts with "-"`,
		signed("github", "push", []byte(push)), []byte(push))
	for _, r := range reqs {
		status, reply := f.hookPost(t, r.path, r.hdr, r.body)
		if got, _ := reply["error"].(string); status != 400 || !strings.Contains(got, r.msg) {
			t.Errorf("%s: %d %q, want 400 %q", r.name, status, got, r.msg)
		}
	}
	if n := len(must(f.db.Changes(store.ChangeFilter{}))(t)); n != 0 {
		t.Errorf("%d changes stored by refused requests", n)
	}
	h, b = form("branch", "release/1.x-rc-2", "revision", "v1.0-rc1")
	if status, reply := f.hookPost(t, "/change_hook/base", h, b); status != 200 {
		t.Errorf("branch with dashes inside: %d %v", status, reply)
	}
}
