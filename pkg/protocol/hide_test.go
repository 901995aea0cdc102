package protocol

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestHider(t *testing.T) {
	t.Parallel()
	h := NewHider([]Secret{
		{Value: "s3cr3t", Name: "token"},
		{Value: "s3cr3t-longer", Name: "long"},
		{Value: "line one\nline two\n", Name: "key"},
		{Value: "", Name: "empty"},
	})
	tests := []struct{ in, want string }{
		{"echo s3cr3t", "echo <token>"},
		{"s3cr3t-longer and s3cr3t", "<long> and <token>"},
		{"key: line two", "key: <key>"},
		{"git clone https://user:pa55@host/r.git", "git clone https://user:xxxx@host/r.git"},
		{"https://user:s3cr3t@host/", "https://user:xxxx@host/"},
		{"ssh://git@host/r.git and user@host:r.git", "ssh://git@host/r.git and user@host:r.git"},
		{"nothing here", "nothing here"},
	}
	for _, tc := range tests {
		if got := h.Hide(tc.in); got != tc.want {
			t.Errorf("Hide(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var none *Hider
	if got := none.Hide("http://u:p@h/ s3cr3t"); got != "http://u:xxxx@h/ s3cr3t" {
		t.Errorf("nil Hider: %q", got)
	}
}

// TestSecretsReachWorker: the secrets of a command travel with it, and
// the worker's log shows them hidden.
func TestSecretsReachWorker(t *testing.T) {
	t.Parallel()
	const secret = "v4lue-0f-th3-s3cr3t"
	m := startMaster(t, "127.0.0.1:0")
	wlog := &syncBuffer{}
	w := NewClient(ClientConfig{Master: m.addr, Name: "w1", Password: "pw", Executor: newTestExecutor(),
		Logger: slog.New(slog.NewTextHandler(wlog, nil)), MinBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := waitAttach(t, m)

	cmd := shell("nope-" + secret) // the test executor fails it, naming it
	cmd.Secrets = []Secret{{Value: secret, Name: "token"}}
	res, _, err := collect(t, t.Context(), c, cmd)
	if err != nil || !strings.Contains(res.Err, "unknown command") {
		t.Fatalf("Run = %+v, %v; want the executor's refusal", res, err)
	}
	cancel()
	<-done
	done <- nil
	if log := wlog.String(); !strings.Contains(log, "unknown command nope-<token>") || strings.Contains(log, secret) {
		t.Errorf("the worker's log does not show the command's error with the secret hidden:\n%s", log)
	}
}
