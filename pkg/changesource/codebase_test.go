package changesource

import (
	"path/filepath"
	"testing"
)

// A poller with a codebase stamps its changes with it (buildbot's
// GitPoller codebase), and the change's source stamp carries it too.
func TestPollStampsCodebase(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.commit("initial", "README", "hello\n")
	db := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	p, rec := newTestPoller(t, GitPollerConfig{RepoURL: r.url(), Codebase: "lib"}, db)
	poll(t, p)
	rev := r.commit("change", "README", "hello again\n")
	poll(t, p)
	got := rec.take()
	if len(got) != 1 || got[0].Revision != rev || got[0].Codebase != "lib" {
		t.Fatalf("announced %+v, want one change of codebase lib at %s", got, rev)
	}
	ss, err := db.SourceStamp(got[0].SourceStampID)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Codebase != "lib" || ss.Revision != rev {
		t.Errorf("source stamp %+v, want codebase lib at %s", ss, rev)
	}
}
