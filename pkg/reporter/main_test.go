package reporter

import (
	"os"
	"testing"
)

// TestMain stops the servers the package's tests share (the SMTP servers
// of mail_server_test.go) after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	stopMailServer()
	os.Exit(code)
}
