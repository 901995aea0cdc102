package bbimport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/google/go-cmp/cmp"
)

// needBuildbot installs Debian's buildbot when it is missing and returns
// its sample master.cfg.
func needBuildbot(t *testing.T) string {
	t.Helper()
	testdeb.Need(t, "buildbot", "buildbot")
	sample := "/usr/lib/python3/dist-packages/buildbot/scripts/sample.cfg"
	if _, err := os.Stat(sample); err != nil {
		t.Fatalf("buildbot is installed but its sample.cfg is not there: %v", err)
	}
	return sample
}

// importFile imports the master.cfg at src (copied into a temporary
// basedir) and parses the TOML with gbb's loader, as checkconfig does.
func importFile(t *testing.T, src string) (map[string]any, *Result, *config.Config) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "master.cfg")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := Load(context.Background(), "", cfgPath)
	if err != nil {
		t.Fatalf("load %s: %v", src, err)
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
	return raw, res, cfg
}

// built is what a config builds: per builder its workers and steps, per
// scheduler its builders.
type built struct {
	Builders   map[string][]string // name -> worker names
	Steps      map[string][]string // builder -> "name: command" of each step
	Schedulers map[string][]string // scheduler -> builder names
	Props      map[string]string   // builder -> its properties and tags, printed
}

// fromBuildbot reads what buildbot's loaded config builds; steps import
// does not translate (written as comments) are left out.
func fromBuildbot(raw map[string]any) built {
	b := built{map[string][]string{}, map[string][]string{}, map[string][]string{}, map[string]string{}}
	for _, bl := range list(raw["builders"]) {
		name := bl["name"].(string)
		b.Builders[name] = strs(bl["workernames"])
		props := map[string]string{}
		for k, v := range bl["properties"].(map[string]any) {
			props[k] = fmt.Sprint(v)
		}
		b.Props[name] = fmt.Sprint(props, strs(bl["tags"]))
		steps := []string{}
		for _, st := range list(bl["steps"]) {
			if !StepSupported(st["class"].(string)) {
				continue
			}
			p, _ := st["params"].(map[string]any)
			if v, ok := p["doStepIf"]; ok && v != nil {
				if _, isBool := v.(bool); !isBool {
					continue // left out whole: it runs only when a function says so
				}
			}
			sn, _ := p["name"].(string)
			if sn == "" {
				sn, _ = st["default_name"].(string)
			}
			cmd := ""
			if c, ok := p["command"]; ok {
				v, err := value(c)
				if err != nil {
					panic(err)
				}
				switch v := v.(type) {
				case string:
					cmd = v
				case []any:
					cmd = strings.Join(strs(v), " ")
				}
			}
			steps = append(steps, sn+": "+cmd)
		}
		b.Steps[name] = steps
	}
	for _, s := range list(raw["schedulers"]) {
		p := s["params"].(map[string]any)
		if f, _ := p["fileIsImportant"].(map[string]any); f["$gbb"] == "untranslatable" && s["class"] == "AnyBranchScheduler" {
			continue // left out whole: a function chose its changes
		}
		b.Schedulers[s["name"].(string)] = strs(p["builderNames"])
	}
	return b
}

// fromGBB reads what gbb's loaded config builds.
func fromGBB(cfg *config.Config) built {
	b := built{map[string][]string{}, map[string][]string{}, map[string][]string{}, map[string]string{}}
	for _, bl := range cfg.Builders {
		b.Builders[bl.Name] = bl.WorkerNames
		props := map[string]string{}
		for k, v := range bl.Properties {
			props[k] = fmt.Sprint(v)
		}
		b.Props[bl.Name] = fmt.Sprint(props, bl.Tags)
		steps := []string{}
		for _, st := range bl.Steps {
			// A constant template's %% is buildbot's plain %.
			cmd := strings.ReplaceAll(st.Command.String(), "%%", "%")
			if st.Type == "git" || st.Type == "trigger" {
				cmd = ""
			}
			steps = append(steps, st.Name+": "+cmd)
		}
		b.Steps[bl.Name] = steps
	}
	for _, s := range cfg.Schedulers {
		b.Schedulers[s.Name] = s.BuilderNames
	}
	return b
}

func TestImportBuildsTheSameThings(t *testing.T) {
	sample := needBuildbot(t)
	for _, tc := range []struct {
		name           string
		file           string
		untranslatable int
		builders       int
	}{
		// Debian's sample.cfg and testdata/steps have no c["www"]:
		// buildbot runs no web server, a counted item.
		{"buildbot's sample.cfg", sample, 1, 1},
		// The large config's untranslatable items: a doStepIf callable,
		// a TreeSize step, a scheduler with a fileIsImportant lambda, an
		// AnyPropertyParameter and the github hook's codebases (from
		// codebaseGenerator).
		{"testdata/large", "testdata/large/master.cfg", 5, 22},
		{"testdata/steps", "testdata/steps/master.cfg", 1, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, res, cfg := importFile(t, tc.file)
			if res.Untranslatable != tc.untranslatable {
				t.Errorf("untranslatable = %d, want %d\n%s", res.Untranslatable, tc.untranslatable, res.TOML)
			}
			if got := strings.Count(res.TOML, "# import-buildbot:"); got != tc.untranslatable {
				t.Errorf("%d comments for %d untranslatable items", got, tc.untranslatable)
			}
			if !strings.Contains(res.TOML, fmt.Sprintf("# import-buildbot note: %d untranslatable item(s)", tc.untranslatable)) {
				t.Errorf("no final count comment:\n%s", res.TOML)
			}
			want, got := fromBuildbot(raw), fromGBB(cfg)
			if len(want.Builders) != tc.builders {
				t.Errorf("buildbot loaded %d builders, want %d", len(want.Builders), tc.builders)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("gbb's config builds other things than buildbot's (-buildbot +gbb):\n%s\n%s", diff, res.TOML)
			}
		})
	}
}

// TestImportLarge checks the forms the large config's loops should take:
// one factory and one matrix for the 20 builders, the pollers' codebases
// (from codebaseGenerator), the locks, the codebases, the nightly
// time, the force params and the reporters.
func TestImportLarge(t *testing.T) {
	needBuildbot(t)
	_, res, cfg := importFile(t, "testdata/large/master.cfg")
	if n := strings.Count(res.TOML, "\n[factories."); n != 1 {
		t.Errorf("%d factories, want 1 (the 20 loop builders')", n)
	}
	if n := strings.Count(res.TOML, `factory = "build"`); n != 1 {
		t.Errorf("%d builders use the factory, want 1 (with a matrix)", n)
	}
	for _, want := range []string{
		`name = "build-%(kw:platform)s-%(kw:target_branch)s"`,
		`worker_names = ["w-%(kw:platform)s"]`,
		"  [builders.matrix]\n  platform = [\"linux\", \"freebsd\", \"macos\", \"windows\", \"netbsd\"]\n  target_branch = [\"main\", \"release-1\", \"release-2\", \"next\"]\n",
	} {
		if !strings.Contains(res.TOML, want) {
			t.Errorf("no %q in\n%s", want, res.TOML)
		}
	}
	// The matrix expands in the builders' order, as the loops made them.
	var names []string
	for _, b := range cfg.Builders[:4] {
		names = append(names, b.Name)
	}
	if diff := cmp.Diff([]string{"build-linux-main", "build-linux-release-1", "build-linux-release-2", "build-linux-next"}, names); diff != "" {
		t.Errorf("builder order (-want +got):\n%s", diff)
	}
	var locks []string
	for _, l := range cfg.Locks {
		locks = append(locks, fmt.Sprintf("%s %s %d %v", l.Name, l.Type, l.MaxCount, l.MaxCountForWorker))
	}
	if diff := cmp.Diff([]string{"cpu worker 2 map[w-windows:1]", "deploy master 1 map[]"}, locks); diff != "" {
		t.Errorf("locks (-want +got):\n%s", diff)
	}
	byName := map[string]config.Scheduler{}
	for _, s := range cfg.Schedulers {
		byName[s.Name] = s
	}
	if cbs := byName["changes"].Codebases; len(cbs) != 3 || cbs["lib"].Repository != "https://git.example.org/lib.git" {
		t.Errorf("codebases of changes: %+v", cbs)
	}
	if c := byName["nightly"].Cron; c != "15 3 * * *" {
		t.Errorf("nightly cron %q", c)
	}
	var pollers []string
	for _, cs := range cfg.ChangeSources {
		pollers = append(pollers, cs.Codebase+" "+cs.RepoURL)
	}
	if diff := cmp.Diff([]string{"app https://git.example.org/app.git", "lib https://git.example.org/lib.git", "docs https://git.example.org/docs.git"}, pollers); diff != "" {
		t.Errorf("the pollers' codebases, from codebaseGenerator (-want +got):\n%s", diff)
	}
	var params []string
	for _, p := range byName["force"].Params {
		params = append(params, p.Name+":"+p.Type)
	}
	if diff := cmp.Diff([]string{"note:string", "jobs:int", "clean:bool", "flavour:choice", "suites:multiple_choice", "pipeline:fixed"}, params); diff != "" {
		t.Errorf("force params (-want +got):\n%s", diff)
	}
	var reps []string
	for _, r := range cfg.Reporters {
		reps = append(reps, r.Type)
	}
	if diff := cmp.Diff([]string{"mail", "github_status"}, reps); diff != "" {
		t.Errorf("reporters (-want +got):\n%s", diff)
	}
	if r := cfg.Reporters[0]; r.SMTPPassword != "%(secret:smtp_password)s" || !slices.Equal(r.Builders, []string{"deploy"}) {
		t.Errorf("mail reporter: %+v", r)
	}
}

func TestImportErrors(t *testing.T) {
	needBuildbot(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "master.cfg")
	if err := os.WriteFile(bad, []byte("c = BuildmasterConfig = {}\nc['workers'] = [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(context.Background(), "", bad)
	var le *LoadError
	if !errors.As(err, &le) || !strings.Contains(le.Msg, "SyntaxError") && !strings.Contains(le.Msg, "error while parsing") {
		t.Errorf("a broken master.cfg: %v, want buildbot's error", err)
	}
	_, err = Load(context.Background(), filepath.Join(dir, "no-python3"), bad)
	if !errors.Is(err, ErrNoBuildbot) || !strings.Contains(err.Error(), "apt-get install buildbot") {
		t.Errorf("no python: %v, want ErrNoBuildbot saying what to install", err)
	}
}

// TestImportRenderablesAndLeftovers imports a master.cfg of the forms
// buildbot users write that gbb takes in part: each untranslatable one is
// a comment at its place, counted, and the rest still passes checkconfig.
func TestImportRenderablesAndLeftovers(t *testing.T) {
	needBuildbot(t)
	dir := t.TempDir()
	secretDir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"w2pw": "a-long-worker-password", "hook": "hook-secret"} {
		if err := os.WriteFile(filepath.Join(secretDir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `from buildbot.plugins import changes, schedulers, secrets, steps, util, worker
from buildbot.process.buildstep import BuildStep

class Custom(BuildStep):
    name = "custom"

c = BuildmasterConfig = {}
c['protocols'] = {'pb': {'port': 9989}}
c['workers'] = [worker.Worker("w1", "secret-password-1234"), worker.Worker("w2", util.Secret("w2pw"))]
c['secretsProviders'] = [secrets.SecretInAFile(dirname="SECRETS")]
c['www'] = {'port': 8010, 'change_hook_dialects': {'github': {'secret': util.Secret("hook")}}}
c['change_source'] = [changes.PBChangeSource()]
c['properties'] = {'owner': 'ops'}
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name="p", command=["echo", util.Property("x", default="dflt")]))
f.addStep(steps.ShellCommand(name="wp", command=["echo", util.WithProperties("%(x)s")]))
f.addStep(steps.ShellCommand(name="kw", command=util.Interpolate("echo %(kw:a)s", a="b")))
f.addStep(steps.ShellCommand(name="rc", command="exit 3", decodeRC={0: 0, 3: 1},
                             env={'PATH': ["/opt/bin", "${PATH}"]}, logfiles={'t': {'filename': 't.log', 'follow': True}}))
f.addStep(Custom())
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
`
	cfg = strings.Replace(cfg, "SECRETS", secretDir, 1)
	if err := os.WriteFile(filepath.Join(dir, "master.cfg"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, res, gcfg := importFile(t, filepath.Join(dir, "master.cfg"))
	for _, want := range []string{
		`command = ["echo", "%(prop:x:~dflt)s"]`,
		`# import-buildbot: step "wp" (ShellCommand): command: WithProperties('%(x)s'): write it as Interpolate`,
		`# import-buildbot: step "kw" (ShellCommand): command: Interpolate('echo %(kw:a)s', **{'a': 'b'}): Interpolate with positional or keyword arguments`,
		`decode_rc = { 0 = "success", 3 = "warnings" }`,
		`env = { PATH = "/opt/bin:${PATH}" }`,
		`logfiles = { t = "t.log" }`,
		`# import-buildbot: step "custom" (`,
		`# import-buildbot: change source PBChangeSource: use the base change hook`,
		`# import-buildbot: c['properties'] owner: gbb has no global properties`,
		"password_file = " + quote(filepath.Join(secretDir, "w2pw")),
		"secret_file = " + quote(filepath.Join(secretDir, "hook")),
		"[[secrets_providers]]\ntype = \"file\"\ndirname = " + quote(secretDir),
	} {
		if !strings.Contains(res.TOML, want) {
			t.Errorf("no %q in\n%s", want, res.TOML)
		}
	}
	if res.Untranslatable != 5 {
		t.Errorf("untranslatable = %d, want 5\n%s", res.Untranslatable, res.TOML)
	}
	if pw := gcfg.Workers[1].Password; pw != "a-long-worker-password" {
		t.Errorf("w2's password from its secret file: %q", pw)
	}
	if s := gcfg.WWW.ChangeHooks["github"].Secret; s != "hook-secret" {
		t.Errorf("the github hook's secret from its secret file: %q", s)
	}
	if n := len(gcfg.Builders[0].Steps); n != 2 {
		t.Errorf("%d steps, want 2 (wp, kw and the custom one are comments)", n)
	}
}

// TestImportMatrixWithOwnSteps: builders of a loop whose steps hold the
// loop's value are one builder with a matrix and %(kw:KEY)s in its steps.
func TestImportMatrixWithOwnSteps(t *testing.T) {
	needBuildbot(t)
	_, res, cfg := importFile(t, "testdata/steps/master.cfg")
	for _, want := range []string{
		"name = \"cross-%(kw:arch)s\"",
		"  [builders.matrix]\n  arch = [\"amd64\", \"arm64\", \"riscv64\"]\n",
		"command = [\"make\", \"ARCH=%(kw:arch)s\"]",
		"masterdest = \"cross/out-%(kw:arch)s.tar\"",
		// buildbot renders only Interpolate's %: a plain string's is %%.
		"command = \"date +%%Y%%m%%d > stamp-%%(x)s\"",
	} {
		if !strings.Contains(res.TOML, want) {
			t.Errorf("no %q in\n%s", want, res.TOML)
		}
	}
	var names []string
	for _, b := range cfg.Builders {
		names = append(names, b.Name)
	}
	if diff := cmp.Diff([]string{"a", "b", "cross-amd64", "cross-arm64", "cross-riscv64"}, names); diff != "" {
		t.Errorf("builders (-want +got):\n%s", diff)
	}
}
