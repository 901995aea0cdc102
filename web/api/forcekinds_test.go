package api

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// A form's multiple_choice sends one value per selected option: all of
// them are the param's value; a username param is the owner, not a
// property.
func TestForceFormMultipleChoice(t *testing.T) {
	t.Parallel()
	params := []scheduler.ForceParam{{Name: "suites", Type: "multiple_choice"}, {Name: "username", Type: "username"}, {Name: "note", Type: "string"}}
	fr, err := forceRequestFromForm(url.Values{"suites": {"unit", "race"}, "username": {"Jo <jo@example.org>"}, "note": {"a", "b"}}, params)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"suites": []string{"unit", "race"}, "note": "a"}
	if d := cmp.Diff(want, fr.Properties); d != "" || fr.Owner != "Jo <jo@example.org>" {
		t.Errorf("owner %q, properties (-want +got):\n%s", fr.Owner, d)
	}
}
