package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const triggerConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["wait", "nowait"]

[[schedulers]]
type = "triggerable"
name = "downstream"
builder_names = ["down-ok", "down-fail"]

[[builders]]
name = "wait"
worker_names = ["w1"]
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["downstream"]
  wait_for_finish = true
  set_properties = { color = "blue" }

  [[builders.steps]]
  type = "shell"
  name = "after"
  command = "echo after"
  always_run = true

[[builders]]
name = "nowait"
worker_names = ["w1"]
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["downstream"]

[[builders]]
name = "down-ok"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo ok"

[[builders]]
name = "down-fail"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "exit 1"
`

// TestTrigger: a trigger step that waits takes the worst result of the
// builds it triggered, which get its set_properties; one that does not wait
// succeeds at once.
func TestTrigger(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(triggerConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	up := e.waitBuild(e.force("force", 1, "upstream"), 60*time.Second)
	if up.Results == nil || *up.Results != 2 {
		t.Errorf("waiting upstream build: %+v, want failure (a downstream build failed)", up)
	}
	steps := e.steps(up.BuildID)
	if len(steps) != 3 || steps[1].Name != "trigger" || *steps[1].Results != 2 || steps[2].Name != "after" {
		t.Errorf("upstream steps: %+v", steps)
	}
	// Both downstream builds ran, before the upstream one ended, with the
	// trigger's properties.
	all := e.waitBuilds(3)
	for _, b := range all[1:] {
		if got := e.property(b.BuildID, "color"); got != "blue" {
			t.Errorf("downstream build %d: color %v, want blue", b.BuildID, got)
		}
		if *b.CompleteAt > *up.CompleteAt {
			t.Errorf("downstream build %d ended after the build that waited for it", b.BuildID)
		}
	}

	nowait := e.waitBuild(e.force("force", 2, "no wait"), 60*time.Second)
	if nowait.Results == nil || *nowait.Results != 0 {
		t.Errorf("non-waiting upstream build: %+v, want success", nowait)
	}
	e.waitBuilds(6)
}

// triggerSecretConfig passes a secret to a triggered build, whose shell
// step writes the sha256 of the value it got.
const triggerSecretConfig = loopback + workerW1 + `
[[secrets_providers]]
type = "file"
dirname = "{{.Dir}}/secrets"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["up"]

[[schedulers]]
type = "triggerable"
name = "down"
builder_names = ["down"]

[[builders]]
name = "up"
worker_names = ["w1"]
  [[builders.steps]]
  type = "set_property"
  property = "mine"
  value = "%(secret:token)s"
  [[builders.steps]]
  type = "shell"
  name = "use mine"
  command = "printf '%%s' '%(prop:mine)s' | sha256sum > {{.Dir}}/mine.sha256"
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["down"]
  wait_for_finish = true
  set_properties = { leak = "%(secret:token)s", nested = ["x%(secret:token)sx"], plain = "blue" }

[[builders]]
name = "down"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "use %(prop:leak)s"
  command = "printf '%%s' '%(prop:leak)s' | sha256sum > {{.Dir}}/leak.sha256; echo '%(prop:leak)s' %(prop:nested)s %(prop:plain)s"
`

// TestTriggerSecret: a secret in a trigger's set_properties reaches the
// triggered build's shell step as its value (not "<token>", which a shell
// reads as a redirection), while the store, the API and the logs only
// ever show it redacted.
func TestTriggerSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const secret = "tr1gg3r-s3cr3t-value"
	if err := os.Mkdir(filepath.Join(e.Dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "secrets", "token"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(triggerSecretConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	up := e.waitBuild(e.force("force", 1, "secret"), 60*time.Second)
	if up.Results == nil || *up.Results != 0 {
		t.Fatalf("upstream build: %+v", up)
	}
	all := e.waitBuilds(2)
	down := all[1]
	sum := sha256.Sum256([]byte(secret))
	want := hex.EncodeToString(sum[:])
	got, err := os.ReadFile(filepath.Join(e.Dir, "leak.sha256"))
	if err != nil || !strings.HasPrefix(string(got), want) {
		t.Errorf("the triggered step got a value whose sha256 is %q (%v), want the secret's %s", got, err, want)
	}
	// So does a later step of a build that set a property from a secret.
	got, err = os.ReadFile(filepath.Join(e.Dir, "mine.sha256"))
	if err != nil || !strings.HasPrefix(string(got), want) {
		t.Errorf("a step using a property set from the secret got a value whose sha256 is %q (%v), want the secret's %s", got, err, want)
	}
	if got := e.property(up.BuildID, "mine"); got != "<token>" {
		t.Errorf("API: property mine = %#v, want <token>", got)
	}
	steps := e.steps(down.BuildID)
	if len(steps) != 2 || steps[1].Name != "use <token>" || *steps[1].Results != 0 {
		t.Fatalf("triggered build's steps: %+v", steps)
	}
	if log := e.stdio(steps[1].StepID); !strings.Contains(log, "o<token> [x<token>x] blue\n") || strings.Contains(log, secret) {
		t.Errorf("triggered step's log:\n%s\nwant the secret redacted", log)
	}
	for name, want := range map[string]any{"leak": "<token>", "nested": []any{"x<token>x"}, "plain": "blue"} {
		if got := e.property(down.BuildID, name); !reflect.DeepEqual(got, want) {
			t.Errorf("API: property %s = %#v, want %#v", name, got, want)
		}
	}
	// Nothing the master stores holds the value.
	e.stopMaster()
	db, err := os.ReadFile(filepath.Join(e.masterDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(secret)) {
		t.Errorf("state.db holds the secret's value")
	}
	if !bytes.Contains(db, []byte(`"secrets":["token"]`)) {
		t.Errorf("state.db does not say which secret the property holds")
	}
}
