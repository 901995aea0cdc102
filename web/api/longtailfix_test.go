package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/web/auth"
)

// A force naming a builder twice is the caller's mistake: 400 with the
// reason, no buildset.
func TestForceDuplicateBuilderNames(t *testing.T) {
	t.Parallel()
	u := newUIFixture(t, auth.Access{})
	status, body := u.post(t, "/api/v2/forceschedulers/force", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["runtests","runtests"]}}`)
	errObj, _ := body["error"].(map[string]any)
	if msg, _ := errObj["message"].(string); status != http.StatusBadRequest || !strings.Contains(msg, `"runtests" is given twice`) {
		t.Errorf("force with a builder twice: %d %v, want 400 naming it", status, body)
	}
}
