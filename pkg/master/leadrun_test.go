package master

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

const leadRunConfig = `
[protocols.grpc]
port = 0
interface = "127.0.0.1"
tls = "off"

[www]
port = 0
interface = "127.0.0.1"
[www.change_hook.base]

[db]
heartbeat_interval = "1s"
master_timeout = "3s"

[[workers]]
name = "w"
password = "a-long-enough-password"

[[builders]]
name = "b"
worker_names = ["w"]
  [[builders.steps]]
  type = "shell"
  command = "true"

[[schedulers]]
type = "single_branch"
name = "sb"
branch = "main"
builder_names = ["b"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["b"]
`

// runLeadMaster runs a master on bbolt with leadRunConfig until the
// returned stop is called, which returns Run's error.
func runLeadMaster(t *testing.T) (m *Master, addrs Addrs, dir string, done <-chan error, stop func() error) {
	t.Helper()
	dir = t.TempDir()
	path := filepath.Join(dir, "master.toml")
	if err := os.WriteFile(path, []byte(leadRunConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m = New(dir, cfg, nil)
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan Addrs, 1)
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx, func(a Addrs) { ready <- a }) }()
	select {
	case addrs = <-ready:
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	return m, addrs, dir, errc, func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(time.Minute):
			t.Fatal("Run still running a minute after its context ended")
			return nil
		}
	}
}

func (m *Master) store() store.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// TestMasterLeadsOnBolt: on bbolt the master leads from its start, as one
// master always did: a change a webhook posts is scheduled before the hook
// answers, the leader is recorded, /api/v2/masters shows the master
// active, and once stopped it is marked inactive.
func TestMasterLeadsOnBolt(t *testing.T) {
	t.Parallel()
	m, addrs, dir, _, stop := runLeadMaster(t)
	st := m.store()
	web := "http://" + addrs.Web.String()
	resp, err := http.Post(web+"/change_hook/base", "application/json",
		strings.NewReader(`{"comments":"x","author":"a <a@example.org>","revision":"abc","branch":"main","repository":"r"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("hook: %s", resp.Status)
	}
	bss, err := st.Buildsets(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bss) != 1 || bss[0].SchedulerName != "sb" {
		t.Errorf("buildsets once the hook answered: %+v, want one of sb", bss)
	}
	id := m.masterID.Load()
	if ls, ok, err := ReadLeader(st); err != nil || !ok || ls.MasterID != id {
		t.Errorf("ReadLeader = %+v, %v, %v; want master %d", ls, ok, err, id)
	}
	var page struct {
		Masters []map[string]any `json:"masters"`
	}
	resp, err = http.Get(web + "/api/v2/masters")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Masters) != 1 || page.Masters[0]["active"] != true || page.Masters[0]["masterid"] != float64(id) {
		t.Errorf("/api/v2/masters = %+v, %v", page, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := db.Masters()
	if err != nil || len(ms) != 1 || ms[0].Active {
		t.Errorf("masters after the stop: %+v, %v; want this one inactive", ms, err)
	}
}

// TestMasterDeclaredDead: a running master marked inactive by another
// (which presumed it dead) stops with ErrDeclaredDead and leaves itself
// inactive; run again, it registers afresh.
func TestMasterDeclaredDead(t *testing.T) {
	t.Parallel()
	m, _, _, done, _ := runLeadMaster(t)
	if err := m.store().SetMasterActive(m.masterID.Load(), false, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrDeclaredDead) {
			t.Fatalf("Run = %v, want ErrDeclaredDead", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still running a minute after this master was marked dead")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx, func(Addrs) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("Run again: %v", err)
	}
	ms, err := m.store().Masters()
	if err != nil || len(ms) != 1 || !ms[0].Active {
		t.Errorf("masters once run again: %+v, %v; want this one active", ms, err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
