package bbimport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/web/auth"
	"golang.org/x/crypto/bcrypt"
)

// importSrc imports the master.cfg text src (in a temporary basedir,
// with the extra files given by name) and parses the TOML with gbb's
// loader, as checkconfig does.
func importSrc(t *testing.T, src string, extra map[string]string) (*Result, *config.Config) {
	t.Helper()
	needBuildbot(t)
	dir := t.TempDir()
	for name, text := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "master.cfg")
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := Load(context.Background(), "", cfgPath)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	res := Convert(raw)
	tomlPath := filepath.Join(dir, "master.toml")
	if err := os.WriteFile(tomlPath, []byte(res.TOML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(tomlPath)
	if err != nil {
		t.Fatalf("the imported config does not pass checkconfig: %v\n%s", err, res.TOML)
	}
	if got := strings.Count(res.TOML, "# import-buildbot:"); got != res.Untranslatable {
		t.Errorf("%d markers for %d untranslatable items", got, res.Untranslatable)
	}
	return res, cfg
}

func builderNamed(t *testing.T, cfg *config.Config, name string) config.Builder {
	t.Helper()
	for _, b := range cfg.Builders {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no builder %q", name)
	return config.Builder{}
}

const probeHead = `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "s3cretworkerpassword1")]
c["protocols"] = {"pb": {"port": 24989}}
`

// A step buildbot runs only when a function says so is left out whole,
// never kept running on every build.
func TestImportDoStepIfFunctionLeavesStepOut(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["builders"] = [
  util.BuilderConfig(name="guarded", workernames=["linux-w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="deploy-prod", command="echo DEPLOYING", doStepIf=lambda step: False),
    steps.ShellCommand(name="hidden", command="echo hi", hideStepIf=lambda r, s: True),
    steps.ShellCommand(name="never", command="echo never", doStepIf=False),
    steps.ShellCommand(name="after", command="echo after")])),
]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["guarded"])]
`, nil)
	b := builderNamed(t, cfg, "guarded")
	var names []string
	for _, s := range b.Steps {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "hidden,never,after" {
		t.Errorf("steps = %v, want hidden,never,after (deploy-prod left out)\n%s", names, res.TOML)
	}
	if !strings.Contains(res.TOML, `# import-buildbot: step "deploy-prod" (ShellCommand): doStepIf`) {
		t.Errorf("no comment where deploy-prod was:\n%s", res.TOML)
	}
	if b.Steps[1].DoStepIf == nil {
		t.Errorf("doStepIf=False not written as do_step_if = false")
	}
	if res.Untranslatable != 3 { // deploy-prod, hidden's hideStepIf, no web server
		t.Errorf("untranslatable = %d, want 3\n%s", res.Untranslatable, res.TOML)
	}
}

// buildbot's step classes' own result settings (Compile's and the
// transfers' haltOnFailure, Test's warnOnFailure, warnOnWarnings false
// everywhere) are written where they differ from gbb's.
func TestImportStepClassDefaults(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["builders"] = [
  util.BuilderConfig(name="halt", workernames=["linux-w1"], factory=util.BuildFactory([
    steps.Compile(command="echo compiling; exit 1"),
    steps.Test(command="make test"),
    steps.FileDownload(mastersrc="missing.txt", workerdest="x.txt"),
    steps.MasterShellCommand(command="true"),
    steps.Git(repourl="https://example.org/r.git"),
    steps.Git(repourl="https://example.org/r.git", haltOnFailure=False, name="git2"),
    steps.ShellCommand(name="publish", command="echo PUBLISHED", flunkOnFailure=False)])),
]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["halt"])]
`, nil)
	s := builderNamed(t, cfg, "halt").Steps
	type want struct{ halt, flunk, warn, quiet bool }
	for i, w := range []want{
		{true, true, false, true},
		{false, true, true, true},
		{true, true, false, true},
		{true, true, false, true},
		{true, true, false, true},
		{false, true, false, true},
		{false, false, false, true},
	} {
		got := want{s[i].HaltOnFailure, s[i].FlunkOnFailure, s[i].WarnOnFailure, s[i].QuietWarnings}
		if got != w {
			t.Errorf("step %d (%s): halt, flunk, warn, quiet warnings = %v, want %v", i, s[i].Name, got, w)
		}
	}
	if t.Failed() {
		t.Log(res.TOML)
	}
}

// master.cfg's prints never mix with the loader's JSON; sys.exit is a
// clear error; a helper module with a standard module's name does not
// shadow it (buildbot appends the basedir to sys.path).
func TestImportLoaderIsolation(t *testing.T) {
	needBuildbot(t)
	minimal := probeHead + `
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`
	load := func(src string, extra map[string]string) (map[string]any, string, error) {
		dir := t.TempDir()
		for name, text := range extra {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, "master.cfg")
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		raw, err := LoadWith(context.Background(), p, Options{Output: &out})
		return raw, out.String(), err
	}
	for _, pre := range []string{`import json; print(json.dumps({}))` + "\n", `print({})` + "\n", `print("Loading config")` + "\n"} {
		raw, printed, err := load(pre+minimal, nil)
		if err != nil {
			t.Errorf("%q: %v", pre, err)
			continue
		}
		if len(list(raw["builders"])) != 1 {
			t.Errorf("%q: builders = %v", pre, raw["builders"])
		}
		if !strings.Contains(printed, strings.Trim(strings.TrimPrefix(pre, "import json; print(json.dumps("), "()\n\"print")) {
			t.Errorf("%q: master.cfg's print not passed on: %q", pre, printed)
		}
	}
	_, _, err := load(minimal+"import sys\nsys.exit(0)\n", nil)
	var le *LoadError
	if !errors.As(err, &le) || !strings.Contains(le.Msg, "sys.exit(0)") {
		t.Errorf("sys.exit: %v", err)
	}
	_, _, err = load(minimal+"import os\nos._exit(0)\n", nil)
	if !errors.As(err, &le) || !strings.Contains(le.Msg, "os._exit") {
		t.Errorf("os._exit: %v", err)
	}
	for _, mod := range []string{"platform.py", "email.py", "queue.py", "inspect.py"} {
		if _, _, err := load(minimal, map[string]string{mod: "raise RuntimeError('shadowed')\n"}); err != nil {
			t.Errorf("a %s next to master.cfg: %v", mod, err)
		}
	}
}

// gone waits until the process pid has exited (gone or a zombie).
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %d still runs", pid)
}

// A master.cfg that never ends is stopped at the timeout, and so is a
// load whose context ends (gbb-master's SIGINT and SIGTERM): the loader
// and the children master.cfg started are killed.
func TestImportLoaderTimeoutKillsGroup(t *testing.T) {
	needBuildbot(t)
	for _, byCancel := range []bool{false, true} {
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "child.pid")
		src := `import subprocess
p = subprocess.Popen(["sleep", "600"])
open("child.pid.tmp", "w").write(str(p.pid))
import os; os.rename("child.pid.tmp", "child.pid")
while True:
    pass
`
		p := filepath.Join(dir, "master.cfg")
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		opts := Options{Timeout: 5 * time.Minute}
		if !byCancel {
			opts.Timeout = 3 * time.Second
		}
		errc := make(chan error, 1)
		go func() { _, err := LoadWith(ctx, p, opts); errc <- err }()
		var pid int
		deadline := time.Now().Add(60 * time.Second)
		for pid == 0 && time.Now().Before(deadline) {
			if b, err := os.ReadFile(pidFile); err == nil {
				pid, _ = strconv.Atoi(string(b))
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if pid == 0 {
			cancel()
			<-errc
			t.Fatal("master.cfg's child never started")
		}
		if byCancel {
			cancel()
		}
		err := <-errc
		cancel()
		switch {
		case err == nil:
			t.Errorf("cancel=%v: no error", byCancel)
		case !byCancel && !strings.Contains(err.Error(), "did not finish"):
			t.Errorf("timeout: %v", err)
		case byCancel && !errors.Is(err, context.Canceled):
			t.Errorf("cancel: %v", err)
		}
		gone(t, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// strports ports keep their port and interface; the pb port stays
// buildbot-workers' ([protocols.pb]) and gbb-workers get a port of their
// own with TLS; a strports string gbb has no form for is a counted
// comment, never port 0.
func TestImportStrports(t *testing.T) {
	res, cfg := importSrc(t, `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "pw")]
c["protocols"] = {"pb": {"port": "tcp:23989:interface=127.0.0.1"}}
c["www"] = dict(port="tcp:port=23810:interface=127.0.0.1")
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	if cfg.WWW.Port != 23810 || cfg.WWW.Interface != "127.0.0.1" {
		t.Errorf("www = %d on %q, want 23810 on 127.0.0.1", cfg.WWW.Port, cfg.WWW.Interface)
	}
	pb := cfg.Protocols.PB
	if !pb.Enabled || pb.Port != 23989 || pb.Interface != "127.0.0.1" {
		t.Errorf("protocols.pb = %+v, want buildbot's port 23989 on 127.0.0.1", pb)
	}
	g := cfg.Protocols.GRPC
	if g.Port == 23989 || g.Interface != "127.0.0.1" || g.TLS.Mode != config.TLSAuto {
		t.Errorf("protocols.grpc = %d on %q, tls %q: want another port on 127.0.0.1 with tls auto", g.Port, g.Interface, g.TLS.Mode)
	}
	if res.Untranslatable != 0 {
		t.Errorf("untranslatable = %d\n%s", res.Untranslatable, res.TOML)
	}
	// buildbot's default NoAuth and Authz(): no login, as in buildbot.
	if cfg.WWW.Auth.Enabled() {
		t.Errorf("[www.auth] written for buildbot's NoAuth:\n%s", res.TOML)
	}

	res, cfg = importSrc(t, `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "pw")]
c["protocols"] = {"pb": {"port": "ssl:23989:privateKey=k.pem:certKey=c.pem"}}
c["www"] = dict(port="unix:/tmp/www.sock")
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	if strings.Contains(res.TOML, "port = 0") || cfg.WWW.Port == 0 || cfg.Protocols.PB.Enabled {
		t.Errorf("unparseable strports written as a port:\n%s", res.TOML)
	}
	if res.Untranslatable != 2 || !strings.Contains(res.TOML, `# import-buildbot: www port: "unix:/tmp/www.sock"`) {
		t.Errorf("untranslatable = %d, want 2 (www and pb ports)\n%s", res.Untranslatable, res.TOML)
	}
	// Untranslated ports fail closed: gbb's listeners stay on loopback,
	// never on every address.
	if cfg.WWW.Interface != "127.0.0.1" || cfg.Protocols.GRPC.Interface != "127.0.0.1" {
		t.Errorf("www on %q, grpc on %q: want both on 127.0.0.1 when buildbot's ports are not translated\n%s", cfg.WWW.Interface, cfg.Protocols.GRPC.Interface, res.TOML)
	}

	// backlog is ignored, the interface kept; tcp6 with an interface is
	// that interface.
	res, cfg = importSrc(t, `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "pw")]
c["protocols"] = {"pb": {"port": r"tcp6:port=23989:interface=\:\:1"}}
c["www"] = dict(port="tcp:23810:backlog=5:interface=127.0.0.2")
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	if cfg.WWW.Port != 23810 || cfg.WWW.Interface != "127.0.0.2" {
		t.Errorf("www = %d on %q, want 23810 on 127.0.0.2\n%s", cfg.WWW.Port, cfg.WWW.Interface, res.TOML)
	}
	if pb := cfg.Protocols.PB; !pb.Enabled || pb.Port != 23989 || pb.Interface != "::1" {
		t.Errorf("protocols.pb = %+v, want 23989 on ::1\n%s", pb, res.TOML)
	}
	if res.Untranslatable != 0 {
		t.Errorf("untranslatable = %d\n%s", res.Untranslatable, res.TOML)
	}

	// tcp6 without an interface (every IPv6 address) is not translated:
	// loopback until set by hand.
	res, cfg = importSrc(t, `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "pw")]
c["protocols"] = {"pb": {"port": "tcp6:23989"}}
c["www"] = dict(port="tcp6:23810")
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	if cfg.WWW.Interface != "127.0.0.1" || cfg.Protocols.GRPC.Interface != "127.0.0.1" || res.Untranslatable != 2 {
		t.Errorf("www on %q, grpc on %q, %d untranslatable: want both on 127.0.0.1 and 2\n%s", cfg.WWW.Interface, cfg.Protocols.GRPC.Interface, res.Untranslatable, res.TOML)
	}
}

// A master.cfg without a www port: buildbot runs no web server. gbb
// always serves its UI, so the import keeps it on loopback and says so
// (counted), rather than open it, with force, on every address.
func TestImportNoWebServerIsLoopback(t *testing.T) {
	for name, www := range map[string]string{
		"no www":    "",
		"port None": `c["www"] = dict(port=None)` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			res, cfg := importSrc(t, `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "pw")]
c["protocols"] = {"pb": {"port": 24989}}
`+www+`c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
			if cfg.WWW.Interface != "127.0.0.1" {
				t.Errorf("www interface = %q, want 127.0.0.1 (buildbot had no web server)\n%s", cfg.WWW.Interface, res.TOML)
			}
			if res.Untranslatable != 1 || !strings.Contains(res.TOML, "# import-buildbot: www port: buildbot ran no web server") {
				t.Errorf("untranslatable = %d, want 1: the missing web server\n%s", res.Untranslatable, res.TOML)
			}
		})
	}
}

// buildbot's UserPasswordAuth and Authz become [www.auth] users (bcrypt
// hashes) and [www.authz] rules; a login or a rule gbb cannot express
// leaves every action refused, never the UI open.
func TestImportWebAuth(t *testing.T) {
	const head = `from buildbot.plugins import *
c = BuildmasterConfig = {}
c["workers"] = [worker.Worker("linux-w1", "pw")]
c["protocols"] = {"pb": {"port": 24989}}
c["builders"] = [util.BuilderConfig(name=n, workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")])) for n in ("deploy-prod", "test")]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["deploy-prod", "test"])]
`
	res, cfg := importSrc(t, head+`
c["www"] = dict(port=23810,
  auth=util.UserPasswordAuth({"alice": "alicepw", "bob": "bobpw"}),
  authz=util.Authz(
    allowRules=[util.ForceBuildEndpointMatcher(builder="deploy*", role="admins"),
                util.StopBuildEndpointMatcher(role="owner"),
                util.AnyControlEndpointMatcher(role="devs")],
    roleMatchers=[util.RolesFromUsername(roles=["admins", "devs"], usernames=["alice"]),
                  util.RolesFromUsername(roles=["devs"], usernames=["bob"]),
                  util.RolesFromOwner(role="owner")]))
`, nil)
	if res.Untranslatable != 0 {
		t.Errorf("untranslatable = %d\n%s", res.Untranslatable, res.TOML)
	}
	a := cfg.WWW.Auth
	if a.Type != "users" || len(a.Users) != 2 {
		t.Fatalf("www.auth = %+v\n%s", a, res.TOML)
	}
	for _, u := range a.Users {
		if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(u.Username+"pw")); err != nil {
			t.Errorf("user %s: %v", u.Username, err)
		}
	}
	alice, bob := &auth.User{Name: "alice"}, &auth.User{Name: "bob"}
	for _, c := range []struct {
		u               *auth.User
		action, builder string
		owner           string
		want            bool
	}{
		{nil, "force", "test", "", false},
		{nil, "force", "deploy-prod", "", false},
		{alice, "force", "deploy-prod", "", true},
		{bob, "force", "deploy-prod", "", false},
		{bob, "force", "test", "", true},
		{bob, "stop", "test", "bob", true},
		{bob, "stop", "test", "alice", false},
	} {
		name := "anonymous"
		if c.u != nil {
			name = c.u.Name
		}
		if got := auth.Allowed(cfg.WWW.Authz, c.u, c.action, c.builder, c.owner); got != c.want {
			t.Errorf("%s %s %s (owner %q) = %v, want %v", name, c.action, c.builder, c.owner, got, c.want)
		}
	}

	// A login gbb does not have, and a role matcher it does not have:
	// every action refused, counted.
	for _, www := range []string{
		`c["www"] = dict(port=23810, auth=util.RemoteUserAuth(), authz=util.Authz(allowRules=[util.AnyControlEndpointMatcher(role="admins")], roleMatchers=[util.RolesFromGroups()]))`,
		`c["www"] = dict(port=23810, auth=util.UserPasswordAuth({"alice": "alicepw"}), authz=util.Authz(allowRules=[util.AnyControlEndpointMatcher(role="admins")], roleMatchers=[util.RolesFromEmails(admins=["alice@example.org"])]))`,
		`c["www"] = dict(port=23810, authz=util.Authz(allowRules=[util.AnyControlEndpointMatcher(role="admins")]))`,
	} {
		res, cfg := importSrc(t, head+www+"\n", nil)
		if res.Untranslatable != 1 || !cfg.WWW.Auth.Enabled() {
			t.Errorf("%s: untranslatable = %d, auth %v\n%s", www, res.Untranslatable, cfg.WWW.Auth.Type, res.TOML)
		}
		for _, u := range []*auth.User{nil, {Name: "alice", Groups: []string{"admins"}}} {
			for _, act := range []string{"force", "stop", "enable", "kill"} {
				if auth.Allowed(cfg.WWW.Authz, u, act, "test", "") {
					t.Errorf("%s: %v may %s", www, u, act)
				}
			}
		}
	}
}

// %(kw:X)s in an Interpolate without keyword arguments is not a matrix
// value (buildbot renders it from the Interpolate's own, missing,
// keyword arguments): the step is a counted comment and the builders
// that share the factory stay builders, never a matrix that would fill
// it in.
func TestImportKwWithoutKwargsIsNoMatrix(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
f = util.BuildFactory([
    steps.ShellCommand(name="kw", command=util.Interpolate("echo %(kw:os)s %(prop:os)s")),
    steps.ShellCommand(name="plain", command=util.Interpolate("echo %(prop:os)s %(prop:br)s"))])
c["builders"] = [util.BuilderConfig(name="t-%s-%s" % (o, b), workernames=["linux-w1"], factory=f, properties={"os": o, "br": b})
                 for o in ("linux", "freebsd") for b in ("main", "next")]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=[b.name for b in c["builders"]])]
`, nil)
	if len(cfg.Builders) != 4 {
		t.Fatalf("%d builders", len(cfg.Builders))
	}
	for _, b := range cfg.Builders {
		for _, s := range b.Steps {
			if s.Name == "kw" {
				t.Errorf("%s: step kw kept: %q", b.Name, s.Command)
			}
		}
		if len(b.Steps) != 1 {
			t.Errorf("%s: %d steps, want 1 (plain)", b.Name, len(b.Steps))
		}
	}
	if res.Untranslatable != 2 || !strings.Contains(res.TOML, "%(kw:...)s in an Interpolate without keyword arguments") { // and no web server
		t.Errorf("untranslatable = %d\n%s", res.Untranslatable, res.TOML)
	}
}

// A force scheduler's CodebaseParameter defaults become its codebases'
// defaults; choices and fixed fields gbb's form lacks are counted.
func TestImportForceCodebaseDefaults(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"], codebases=[
  util.CodebaseParameter("app", branch=util.ChoiceStringParameter(name="branch", choices=["main", "dev"], default="main")),
  util.CodebaseParameter("lib", branch=util.StringParameter(name="branch", default="main"), revision=util.StringParameter(name="revision", default="v1"))])]
`, nil)
	var cbs map[string]config.Codebase
	for _, s := range cfg.Schedulers {
		if s.Name == "force" {
			cbs = s.Codebases
		}
	}
	want := map[string]config.Codebase{"app": {Branch: "main"}, "lib": {Branch: "main", Revision: "v1"}}
	if len(cbs) != 2 || cbs["app"] != want["app"] || cbs["lib"] != want["lib"] {
		t.Errorf("codebases = %+v, want %+v\n%s", cbs, want, res.TOML)
	}
	if res.Untranslatable != 2 || !strings.Contains(res.TOML, `choices ["main", "dev"]`) {
		t.Errorf("untranslatable = %d, want 2 (app's branch choices, no web server)\n%s", res.Untranslatable, res.TOML)
	}
}

// A worker path gbb refuses (absolute, leaving its directory, rmdir of
// the builder's directory itself) leaves that step out, counted, and the
// rest of the config still passes checkconfig.
func TestImportAbsoluteWorkerPathLeavesStepOut(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([
  steps.MakeDirectory(name="abs", dir="/srv/out"),
  steps.RemoveDirectory(name="up", dir="../other"),
  steps.RemoveDirectory(name="self", dir="."),
  steps.StringDownload("x", name="dl", workerdest="/etc/x"),
  steps.MakeDirectory(name="ok", dir="out"),
  steps.ShellCommand(name="last", command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	var names []string
	for _, s := range builderNamed(t, cfg, "b").Steps {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "ok,last" {
		t.Errorf("steps %v, want ok,last\n%s", names, res.TOML)
	}
	for _, want := range []string{`step "abs" (MakeDirectory): dir "/srv/out"`, `step "up" (RemoveDirectory)`, `step "self" (RemoveDirectory)`, `step "dl" (StringDownload): workerdest "/etc/x"`} {
		if !strings.Contains(res.TOML, "# import-buildbot: "+want) {
			t.Errorf("no counted comment %s\n%s", want, res.TOML)
		}
	}
	if res.Untranslatable != 5 { // four steps, no web server
		t.Errorf("untranslatable = %d, want 5\n%s", res.Untranslatable, res.TOML)
	}
}

// ShellArg(command=""): buildbot runs no such command, gbb refuses one;
// it is left out, and a sequence of nothing else leaves the step out,
// counted. The config passes checkconfig.
func TestImportShellArgEmptyCommand(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([
  steps.ShellSequence(name="some", commands=[util.ShellArg(command=""), util.ShellArg(command="make", logname="make")]),
  steps.ShellSequence(name="none", commands=[util.ShellArg(command=[])]),
  steps.ShellCommand(name="last", command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	steps := builderNamed(t, cfg, "b").Steps
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "some,last" {
		t.Fatalf("steps %v, want some,last\n%s", names, res.TOML)
	}
	if c := steps[0].Commands; len(c) != 1 || c[0].LogName != "make" {
		t.Errorf("some's commands = %+v, want the make one only", c)
	}
	if res.Untranslatable != 2 || !strings.Contains(res.TOML, `# import-buildbot: step "none" (ShellSequence)`) { // none, no web server
		t.Errorf("untranslatable = %d, want 2\n%s", res.Untranslatable, res.TOML)
	}
}

// A CodebaseParameter field with regex or required=True: buildbot refuses
// a forced value that fails the check (a branch name with a shell
// command in it, say); gbb's force codebases check neither, so the force
// scheduler is left out whole, counted, never kept without the check.
func TestImportForceCodebaseCheckLeavesSchedulerOut(t *testing.T) {
	for name, field := range map[string]string{
		"regex":    `util.StringParameter(name="branch", default="main", regex=r"^[a-z0-9/._-]+$")`,
		"required": `util.StringParameter(name="branch", default="main", required=True)`,
	} {
		t.Run(name, func(t *testing.T) {
			res, cfg := importSrc(t, probeHead+`
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [
  schedulers.ForceScheduler(name="force", builderNames=["b"], codebases=[util.CodebaseParameter("app", branch=`+field+`)]),
  schedulers.ForceScheduler(name="plain", builderNames=["b"])]
`, nil)
			var names []string
			for _, s := range cfg.Schedulers {
				names = append(names, s.Name)
			}
			if !slices.Equal(names, []string{"plain"}) {
				t.Errorf("schedulers %v, want only plain: force's branch check is lost\n%s", names, res.TOML)
			}
			if res.Untranslatable != 2 || !strings.Contains(res.TOML, `# import-buildbot: scheduler "force" (ForceScheduler): force codebase "app" branch: `+name) {
				t.Errorf("untranslatable = %d, want 2 (force left out, no web server)\n%s", res.Untranslatable, res.TOML)
			}
		})
	}
}

// Options gbb has no key for are counted, never dropped silently; master
// paths follow gbb's basedir rule; a matrix of more builders than gbb
// takes is not made.
func TestImportLeftoversCounted(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
import os
os.makedirs(os.path.join(basedir, "uploads"), exist_ok=True)
c["builders"] = [
  util.BuilderConfig(name="b", workernames=["linux-w1"], builddir="custom-dir", factory=util.BuildFactory([
    steps.ShellCommand(name="pty", command="true", usePTY=True, logEnviron=False),
    steps.Git(repourl="https://example.org/r.git", progress=True, retryFetch=True),
    steps.FileUpload(name="inside", workersrc="a", masterdest=os.path.join(basedir, "uploads", "a")),
    steps.FileUpload(name="outside", workersrc="a", masterdest="/srv/outside/a"),
    steps.ShellCommand(name="last", command="true")])),
]
c["schedulers"] = [
  schedulers.ForceScheduler(name="force", builderNames=["b"], reason=util.StringParameter(name="reason", label="Why?", default="force build")),
  schedulers.SingleBranchScheduler(name="sbs", builderNames=["b"], change_filter=util.ChangeFilter(branch="main"), createAbsoluteSourceStamps=True)]
c["services"] = [
  reporters.MailNotifier(fromaddr="ci@example.org", extraHeaders={"X-CI": "yes"}),
  reporters.HttpStatusPush(serverUrl="https://example.org/hook", verify=False),
  reporters.GitHubStatusPush(token="t")]
`, nil)
	for _, want := range []string{
		"builddir", "usePTY", "logEnviron", "option progress", "retryFetch", `step "outside" (FileUpload): masterdest`,
		"force reason label", "createAbsoluteSourceStamps", "extraHeaders", "buildbot ran no web server",
	} {
		if !strings.Contains(res.TOML, want) {
			t.Errorf("no counted comment for %s", want)
		}
	}
	if res.Untranslatable != 10 {
		t.Errorf("untranslatable = %d, want 10", res.Untranslatable)
	}
	var names []string
	for _, s := range builderNamed(t, cfg, "b").Steps {
		names = append(names, s.Name)
		if s.Name == "inside" && s.MasterDest != "uploads/a" {
			t.Errorf("inside: masterdest %q, want uploads/a (relative to the basedir)", s.MasterDest)
		}
	}
	if strings.Join(names, ",") != "pty,git,inside,last" {
		t.Errorf("steps %v", names)
	}
	for _, r := range cfg.Reporters {
		if r.Type == "http_status_push" && r.VerifySSL {
			t.Errorf("HttpStatusPush verify=False lost")
		}
	}
	if t.Failed() {
		t.Log(res.TOML)
	}
}

func TestImportHugeMatrixNotMade(t *testing.T) {
	// The same loop made smaller is a matrix.
	res, _ := importSrc(t, probeHead+`
f = util.BuildFactory([steps.ShellCommand(command="true")])
c["builders"] = [util.BuilderConfig(name="t-%s-%s" % (a, b), workernames=["linux-w1"], factory=f, properties={"a": a, "b": b})
                 for a in ["a%02d" % i for i in range(2)] for b in ["b%02d" % i for i in range(2)]]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=[b.name for b in c["builders"]])]
`, nil)
	if !strings.Contains(res.TOML, "[builders.matrix]") {
		t.Fatalf("the small loop is no matrix:\n%s", res.TOML)
	}
	res, cfg := importSrc(t, probeHead+`
f = util.BuildFactory([steps.ShellCommand(command="true")])
N = 33
c["builders"] = [util.BuilderConfig(name="t-%s-%s" % (a, b), workernames=["linux-w1"], factory=f, properties={"a": a, "b": b})
                 for a in ["a%02d" % i for i in range(N)] for b in ["b%02d" % i for i in range(N)]]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=[b.name for b in c["builders"]])]
`, nil)
	if len(cfg.Builders) != 33*33 || strings.Contains(res.TOML, "[builders.matrix]") {
		t.Errorf("%d builders; matrix written: %v", len(cfg.Builders), strings.Contains(res.TOML, "[builders.matrix]"))
	}
}

// A secrets directory buildbot accepts but gbb refuses is said.
func TestImportSecretsDirMode(t *testing.T) {
	needBuildbot(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "master.cfg")
	src := probeHead + `
c["secretsProviders"] = [secrets.SecretInAFile(dirname="secrets")]
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := Load(context.Background(), "", p)
	if err != nil {
		t.Fatal(err)
	}
	res := Convert(raw)
	if res.Untranslatable != 2 || !strings.Contains(res.TOML, "chmod 700 "+filepath.Join(dir, "secrets")) { // and no web server
		t.Errorf("untranslatable = %d\n%s", res.Untranslatable, res.TOML)
	}
}

// A scheduler whose changes a Python function chooses (filter_fn,
// branch_fn, fileIsImportant) is left out whole: written without it, it
// would build changes buildbot did not. The output passes checkconfig.
func TestImportFilterFunctionLeavesSchedulerOut(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["builders"] = [util.BuilderConfig(name="b", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
fn = schedulers.SingleBranchScheduler(name="fn", builderNames=["b"], change_filter=util.ChangeFilter(filter_fn=lambda ch: False))
c["schedulers"] = [
  schedulers.Dependent(name="dep", upstream=fn, builderNames=["b"]),
  fn,
  schedulers.SingleBranchScheduler(name="both", builderNames=["b"], change_filter=util.ChangeFilter(branch="main", filter_fn=lambda ch: False)),
  schedulers.AnyBranchScheduler(name="imp", builderNames=["b"], fileIsImportant=lambda ch: False),
  schedulers.SingleBranchScheduler(name="plain", builderNames=["b"], change_filter=util.ChangeFilter(branch="main")),
  schedulers.ForceScheduler(name="force", builderNames=["b"])]
`, nil)
	var names []string
	for _, s := range cfg.Schedulers {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "plain,force" {
		t.Errorf("schedulers %v, want plain,force", names)
	}
	for _, n := range []string{"dep", "fn", "both", "imp"} {
		if !strings.Contains(res.TOML, fmt.Sprintf("# import-buildbot: scheduler %q", n)) {
			t.Errorf("no comment for scheduler %s", n)
		}
	}
	if res.Untranslatable != 5 { // and no web server
		t.Errorf("untranslatable = %d, want 5\n%s", res.Untranslatable, res.TOML)
	}
}

// The builders keep the order the loop made them in, matrices or not.
func TestImportKeepsBuilderOrder(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
def make(p, cc):
    return util.BuildFactory([steps.ShellCommand(name="build", command="make CC=%s OS=%s" % (cc, p))])
c["builders"] = []
for p in ("linux", "freebsd"):
    for br in ("main", "next"):
        for cc in ("gcc", "clang"):
            c["builders"].append(util.BuilderConfig(name="b-%s-%s-%s" % (p, br, cc), workernames=["linux-w1"],
                factory=make(p, cc), properties={"platform": p, "branch_name": br, "compiler": cc}))
c["builders"].append(util.BuilderConfig(name="docs", workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="true")])))
for br in ("main", "next"):
    c["builders"].append(util.BuilderConfig(name="t-%s" % br, workernames=["linux-w1"], factory=util.BuildFactory([steps.ShellCommand(command="test")]), properties={"br": br}))
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=[b.name for b in c["builders"]])]
`, nil)
	var want []string
	for _, p := range []string{"linux", "freebsd"} {
		for _, br := range []string{"main", "next"} {
			for _, cc := range []string{"gcc", "clang"} {
				want = append(want, "b-"+p+"-"+br+"-"+cc)
			}
		}
	}
	want = append(want, "docs", "t-main", "t-next")
	var got []string
	for _, b := range cfg.Builders {
		got = append(got, b.Name)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("builders\n%v, want\n%v\n%s", got, want, res.TOML)
	}
	if !strings.Contains(res.TOML, `name = "t-%(kw:br)s"`) {
		t.Errorf("the t- builders, next to each other, are no matrix:\n%s", res.TOML)
	}
}

// A loop that makes a factory per platform (shared by that platform's
// branches) is one matrix with %(kw:platform)s in its steps, not a
// near-identical factory per platform.
func TestImportOneMatrixOverPerValueFactories(t *testing.T) {
	res, cfg := importSrc(t, probeHead+`
c["workers"].append(worker.Worker("any-w", "pw"))
c["builders"] = []
for p in ("linux", "freebsd", "netbsd"):
    f = util.BuildFactory([steps.ShellCommand(name="build", command="make OS=%s" % p),
                           steps.ShellCommand(name="test", command=["./test", "--os", p])])
    for br in ("main", "next"):
        c["builders"].append(util.BuilderConfig(name="b-%s-%s" % (p, br), workernames=["any-w"], factory=f,
                                                properties={"platform": p, "branch_name": br}))
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=[b.name for b in c["builders"]])]
`, nil)
	if strings.Count(res.TOML, "[[builders]]") != 1 || strings.Contains(res.TOML, "[factories.") {
		t.Errorf("want one matrix builder and no factory:\n%s", res.TOML)
	}
	var got []string
	for _, b := range cfg.Builders {
		got = append(got, b.Name+": "+b.Steps[0].Command.String()+" | "+b.Steps[1].Command.String())
	}
	want := []string{}
	for _, p := range []string{"linux", "freebsd", "netbsd"} {
		for _, br := range []string{"main", "next"} {
			want = append(want, "b-"+p+"-"+br+": make OS="+p+" | ./test --os "+p)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("builders\n%s\nwant\n%s\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), res.TOML)
	}
}
