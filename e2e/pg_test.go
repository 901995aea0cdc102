package e2e

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/gbb-ci/gbb/internal/testpg"
)

// pgServer is the PostgreSQL server the e2e tests that need one share,
// started by the first (testpg installs Debian's package when missing) and
// stopped when the test binary's tests are done (pgServerStop, TestMain).
var (
	pgOnce   sync.Once
	pgServer *testpg.Server
	pgErr    error
)

// startPG returns the shared server, starting it on first use; a server
// that cannot start fails the test.
func startPG(t *testing.T) *testpg.Server {
	t.Helper()
	pgOnce.Do(func() { pgServer, pgErr = testpg.Start() })
	if pgErr != nil {
		t.Fatalf("PostgreSQL: %v", pgErr)
	}
	return pgServer
}

// pgServerStop stops the shared server, if a test started one.
func pgServerStop() {
	if pgServer != nil {
		if err := pgServer.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testpg:", err)
		}
	}
}
