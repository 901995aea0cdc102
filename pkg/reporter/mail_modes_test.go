package reporter

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestMailModesThroughRelay: for each of buildbot's modes, a mail
// reporter run by the dispatcher, on a run of builds whose results go
// success, failure, failure, success, warnings, exception, cancelled,
// mails through a real relay (mailpit) the builds the mode should, and
// no other.
func TestMailModesThroughRelay(t *testing.T) {
	t.Parallel()
	srv := mailServer(t)
	results := []int{store.Success, store.Failure, store.Failure, store.Success, store.Warnings, store.Exception, store.Cancelled}
	// want[mode] are the builds (0-based, in results' order) mailed, as
	// buildbot 3.7's generator decides (reporters/generators/utils.py).
	want := map[string][]int{
		"all":       {0, 1, 2, 3, 4, 5, 6},
		"failing":   {1, 2},
		"passing":   {0, 3},
		"problem":   {1},             // a failure after a build that did not fail
		"change":    {1, 3, 4, 5, 6}, // a result other than the previous build's
		"warnings":  {1, 2, 4},       // alone, buildbot reads it as failing and warnings
		"exception": {5},
		"cancelled": {6},
	}
	f := newFixture(t)
	var rs []config.Reporter
	name := func(mode string) string { return fmt.Sprintf("modes-%s-%d", mode, time.Now().UnixNano()) }
	names := map[string]string{}
	for mode := range want {
		names[mode] = name(mode)
		rs = append(rs, config.Reporter{Type: "mail", Name: names[mode], FromAddr: "ci@example.org",
			ExtraRecipients: []string{"team@example.org"}, RelayHost: srv.Plain.host, SMTPPort: srv.Plain.port,
			Mode: []string{mode}, RetryFor: time.Hour, VerifySSL: true})
	}
	f.start(rs, nil)
	var ids []int64
	for _, res := range results {
		b := f.build("runtests", "main")
		f.finish(b, res)
		ids = append(ids, b.ID)
	}
	// Every reporter is done with every entry: what it did not mail, it
	// decided not to.
	entries, err := f.db.OutboxAfter(0, 1000)
	if err != nil || len(entries) == 0 {
		t.Fatalf("outbox: %v, %d entries", err, len(entries))
	}
	last := entries[len(entries)-1].Seq
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range names {
		for {
			cur, err := f.db.OutboxCursor(n)
			if err != nil {
				t.Fatal(err)
			}
			if cur >= last {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reporter %s is at entry %d of %d", n, cur, last)
			}
			time.Sleep(10 * time.Millisecond) // polls the store: the condition is its cursor
		}
	}
	for mode, builds := range want {
		for i, id := range ids {
			msgID := fmt.Sprintf("gbb.build.%d.finished.%s@example.org", id, names[mode])
			got := srv.Plain.messages(t, msgID)
			if slices.Contains(builds, i) {
				if len(got) != 1 {
					t.Errorf("mode %s, build %d (%s): %d mails, want 1", mode, i, ResultName(results[i]), len(got))
					continue
				}
				if !strings.Contains(got[0].Subject, "runtests") || len(got[0].To) != 1 || got[0].To[0].Address != "team@example.org" {
					t.Errorf("mode %s, build %d: subject %q to %v", mode, i, got[0].Subject, got[0].To)
				}
			} else if len(got) != 0 {
				t.Errorf("mode %s, build %d (%s): %d mails, want none", mode, i, ResultName(results[i]), len(got))
			}
		}
	}
}
