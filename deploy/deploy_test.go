// Package deploy_test checks the deployment files of deploy/freebsd and
// deploy/linux with the tools that read them: shellcheck, nginx -t,
// systemd-analyze verify and gbb-master checkconfig. Missing tools are
// installed from Debian's packages; a tool that cannot be had fails the
// test, it is never skipped.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gbb-ci/gbb/internal/testbin"
	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gbb-ci/gbb/internal/testx509"
	"github.com/google/go-cmp/cmp"
)

// root is the module's root directory.
func root(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

var bins struct {
	once sync.Once
	dir  string
	err  error
}

// races collects the race detector's reports of the gbb processes the
// tests start (set up by TestMain).
var races *testbin.Races

// binaries builds gbb-master and gbb-worker once into a temp dir, as `make
// build` does (its tags and flags), with the race detector when the tests
// run with it. At the end of the test, the reports of the race detector
// in the processes it started fail it.
func binaries(t testing.TB) string {
	t.Helper()
	t.Cleanup(func() {
		for _, r := range races.New() {
			t.Errorf("the race detector found a data race in a gbb process of this test or one beside it: %s", r)
		}
	})
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "gbb-deploy-bin")
		if bins.err != nil {
			return
		}
		_, _, bins.err = testbin.Build(root(t), bins.dir)
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.dir
}

func TestMain(m *testing.M) {
	raceDir, err := os.MkdirTemp("", "gbb-deploy-race")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	races = testbin.NewRaces(raceDir)
	if err := races.Setenv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	for _, r := range races.New() {
		fmt.Fprintf(os.Stderr, "the race detector found a data race in a gbb process: %s\n", r)
		code = 1
	}
	os.RemoveAll(raceDir)
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// TestShellcheck runs shellcheck -s sh on the rc.d scripts, the flavours'
// first-start scripts and the rc.subr harness: FreeBSD's /bin/sh is a
// POSIX shell.
func TestShellcheck(t *testing.T) {
	t.Parallel()
	sc := testdeb.Need(t, "shellcheck", "shellcheck")
	files := []string{
		"deploy/freebsd/rc.d/gbb_master",
		"deploy/freebsd/rc.d/gbb_worker",
		"deploy/freebsd/flavours/gbb-master/ezjail.flavour",
		"deploy/freebsd/flavours/gbb-worker/ezjail.flavour",
		"deploy/freebsd/flavours/gbb-master/usr/local/libexec/gbb_master_reopenlogs",
		"deploy/freebsd/flavours/gbb-worker/usr/local/libexec/gbb_worker_reopenlogs",
		"scripts/rcsubr-harness.sh",
	}
	for _, f := range files {
		cmd := exec.Command(sc, "-s", "sh", f)
		cmd.Dir = root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("shellcheck -s sh %s: %v\n%s", f, err, out)
		}
		fi, err := os.Stat(filepath.Join(root(t), f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable (mode %v)", f, fi.Mode())
		}
	}
}

// TestRcConf: each flavour's rc.conf enables its rc.d script and sets only
// variables the script reads, with the basedir its flavour script makes;
// the script runs the program's own start (it daemonizes itself) with the
// pid file the program writes, and the procname of the binary it runs.
func TestRcConf(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ prog, basedir string }{{"master", "/var/db/gbb"}, {"worker", "/b"}} {
		rc := read(t, "deploy/freebsd/rc.d/gbb_"+c.prog)
		conf := read(t, "deploy/freebsd/flavours/gbb-"+c.prog+"/etc/rc.conf")
		flavour := read(t, "deploy/freebsd/flavours/gbb-"+c.prog+"/ezjail.flavour")
		v := "gbb_" + c.prog
		for _, want := range []string{
			"rcvar=" + v + "_enable",
			`command="${` + v + `_bin}"`,
			`procname="${` + v + `_bin}"`,
			`pidfile="${` + v + `_basedir}/` + c.prog + `.pid"`,
			`command_args="start ${` + v + `_basedir}"`,
			`run_rc_command "$1"`,
		} {
			if !strings.Contains(rc, want) {
				t.Errorf("rc.d/gbb_%s lacks %q", c.prog, want)
			}
		}
		for _, l := range regexp.MustCompile(`(?m)^(gbb_\w+)=`).FindAllStringSubmatch(conf, -1) {
			if !strings.Contains(rc, "${"+l[1]+":=") {
				t.Errorf("flavour gbb-%s: rc.conf sets %s, which rc.d/gbb_%s does not read", c.prog, l[1], c.prog)
			}
		}
		for _, want := range []string{v + `_enable="YES"`, v + `_basedir="` + c.basedir + `"`, v + `_user="gbb"`} {
			if !strings.Contains(conf, want) {
				t.Errorf("flavour gbb-%s: rc.conf lacks %s", c.prog, want)
			}
		}
		if !strings.Contains(flavour, "basedir="+c.basedir+"\n") || !strings.Contains(flavour, "pw useradd -n gbb") {
			t.Errorf("flavour gbb-%s: ezjail.flavour does not make user gbb and basedir %s", c.prog, c.basedir)
		}
		// newsyslog rotates the log and then runs a command (flag R), not
		// kill(2) on the pid in the pid file: that file belongs to the
		// user gbb, whom builds run as, and root's newsyslog would signal
		// whatever it names. The command is the rc.d script's reopenlogs,
		// which checks the pid by procname and signals as gbb.
		nsl := read(t, "deploy/freebsd/flavours/gbb-"+c.prog+"/usr/local/etc/newsyslog.conf.d/gbb_"+c.prog+".conf")
		cmdPath := "/usr/local/libexec/gbb_" + c.prog + "_reopenlogs"
		want := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c.basedir+"/"+c.prog+".log") + `\s+gbb:gbb\s+600\s+\d+\s+\d+\s+\S+\s+[A-Z]*R[A-Z]*\s+` + regexp.QuoteMeta(cmdPath) + `$`)
		if !want.MatchString(nsl) {
			t.Errorf("flavour gbb-%s: newsyslog.conf.d/gbb_%s.conf has no line for %s/%s.log, mode 600, flag R, command %s:\n%s", c.prog, c.prog, c.basedir, c.prog, cmdPath, nsl)
		}
		if regexp.MustCompile(`(?m)^[^#]*\.pid\b`).MatchString(nsl) {
			t.Errorf("flavour gbb-%s: newsyslog.conf.d/gbb_%s.conf names a pid file, which the build user owns", c.prog, c.prog)
		}
		cmdText := read(t, "deploy/freebsd/flavours/gbb-"+c.prog+cmdPath)
		if !strings.Contains(cmdText, "exec /usr/local/etc/rc.d/gbb_"+c.prog+" onereopenlogs\n") {
			t.Errorf("flavour gbb-%s: %s does not run the rc.d script's reopenlogs:\n%s", c.prog, cmdPath, cmdText)
		}
		if f := rcFunc(rc, v+"_reopenlogs"); !strings.Contains(f, `if [ -z "${rc_pid}" ]; then`) || !strings.Contains(f, v+`_as_user "${`+v+`_bin} reopen-logs`) {
			t.Errorf("rc.d/gbb_%s: reopenlogs must refuse when rc.subr found no %s by procname (rc_pid), and signal as the user:\n%s", c.prog, c.prog, f)
		}
		// No _args knob (start takes no flag, --nodaemon would hang rc at
		// boot), and rc.subr's own _flags, which would come before
		// "start", is dropped with a warning.
		if strings.Contains(rc, v+"_args:=") || strings.Contains(rc, "${"+v+"_args}") && !strings.Contains(rc, "ignoring "+v+"_args") {
			t.Errorf("rc.d/gbb_%s still reads %s_args", c.prog, v)
		}
		if f := rcFunc(rc, v+"_prestart"); !strings.Contains(f, `if [ -n "${rc_flags}" ]; then`) || !strings.Contains(f, `rc_flags=""`) {
			t.Errorf("rc.d/gbb_%s: start does not warn about and drop %s_flags:\n%s", c.prog, v, f)
		}
	}
	if rc := read(t, "deploy/freebsd/rc.d/gbb_master"); !strings.Contains(rc, `extra_commands="reload checkconfig cleanstop reopenlogs"`) || !strings.Contains(rc, "reconfig ${gbb_master_basedir}") {
		t.Error("rc.d/gbb_master: reload must run gbb-master reconfig, and checkconfig, cleanstop and reopenlogs must be extra commands")
	}
	if rc := read(t, "deploy/freebsd/rc.d/gbb_master"); !strings.Contains(rc, `cleanstop_cmd="${name}_cleanstop"`) ||
		!strings.Contains(rc, "stop --clean --timeout ${gbb_master_clean_timeout} ${gbb_master_basedir}") {
		t.Error("rc.d/gbb_master: cleanstop must run gbb-master stop --clean with the timeout")
	}
}

// rcReserved are the ${name}_SUFFIX variables that FreeBSD's rc.subr
// (libexec/rc/rc.subr, 12 to 15) reads itself in run_rc_command:
// ${name}_program replaces command, ${name}_flags is put before
// command_args, the others change how the command runs. A script that
// assigns one changes what rc.subr does. ${name}_user is rc.subr's too: it
// runs the command with su -m; a script that drops privileges another way
// (daemon -u) must not use it.
var rcReserved = []string{
	"program", "flags", "chdir", "chroot", "nice", "group", "groups", "fib",
	"env", "env_file", "prepend", "login_class", "limits", "oomprotect",
	"setup", "umask", "cpuset", "svcj", "svcj_options", "svcj_ipaddrs", "offcmd",
}

// TestRcReserved: no rc.d script assigns rc.subr's reserved variables (the
// seed's gbb_master_program made command gbb-master itself, and
// gbb_master_flags reached daemon(8)), and restart checks the config
// before it stops the running program.
func TestRcReserved(t *testing.T) {
	t.Parallel()
	for _, prog := range []string{"master", "worker"} {
		file := "deploy/freebsd/rc.d/gbb_" + prog
		rc := read(t, file)
		name := "gbb_" + prog
		for _, sfx := range rcReserved {
			v := regexp.QuoteMeta(name + "_" + sfx)
			// v=..., ${v:=...}, ${v=...}, export v=..., read v, unset v
			assign := regexp.MustCompile(`(?m)(^|[\s;])(export\s+|readonly\s+)?` + v + `=|\$\{` + v + `:?=|\b(read|unset)\s+(-\w+\s+)*` + v + `\b`)
			if m := assign.FindString(rc); m != "" {
				t.Errorf("%s assigns %s_%s (%q), which rc.subr reads itself", file, name, sfx, strings.TrimSpace(m))
			}
		}
		// ${name}_user is for rc.subr's su -m, not for daemon(8) -u.
		if regexp.MustCompile(`(?m)^[^#]*\bdaemon\b[^\n]*\s-u\b`).MatchString(rc) ||
			regexp.MustCompile(`\bunset\s+`+name+`_user\b`).MatchString(rc) {
			t.Errorf("%s drops privileges with daemon -u (or unsets %s_user): rc.subr would su as well; let rc.subr run the command as %s_user", file, name, name)
		}
		// restart_precmd is the config check (as nginx's rc script does),
		// so a bad config is refused before the running program is stopped.
		m := regexp.MustCompile(`(?m)^restart_precmd="\$\{name\}_(\w+)"$`).FindStringSubmatch(rc)
		if m == nil {
			t.Errorf("%s sets no restart_precmd=\"${name}_...\"", file)
			continue
		}
		if !strings.Contains(rc, `checkconfig_cmd="${name}_`+m[1]+`"`) {
			t.Errorf("%s: restart_precmd runs %s_%s, not the function of checkconfig_cmd", file, name, m[1])
		}
		if rcFunc(rc, name+"_"+m[1]) == "" {
			t.Errorf("%s: no function %s_%s", file, name, m[1])
		}
	}
	// What the config check is: the master's own checkconfig; the
	// worker's worker.toml, which it reads at start.
	if f := rcFunc(read(t, "deploy/freebsd/rc.d/gbb_master"), "gbb_master_checkconfig"); !strings.Contains(f, "${gbb_master_bin} checkconfig ${gbb_master_basedir}") {
		t.Errorf("rc.d/gbb_master: gbb_master_checkconfig does not run gbb-master checkconfig:\n%s", f)
	}
	if f := rcFunc(read(t, "deploy/freebsd/rc.d/gbb_worker"), "gbb_worker_checkconfig"); !strings.Contains(f, "worker.toml") {
		t.Errorf("rc.d/gbb_worker: gbb_worker_checkconfig does not check worker.toml:\n%s", f)
	}
}

// rcFunc returns the body of the shell function fn (written "fn()\n{" ...
// "\n}" as rc.d scripts do), or "".
func rcFunc(rc, fn string) string {
	_, body, ok := strings.Cut(rc, "\n"+fn+"()\n{\n")
	if !ok {
		return ""
	}
	body, _, _ = strings.Cut(body, "\n}\n")
	return body
}

// TestMakefileShell: the Makefile's recipes run with /bin/sh, which every
// system has (bash is /usr/local/bin/bash on FreeBSD, if installed at all);
// make help runs here with that shell (dash on Debian).
func TestMakefileShell(t *testing.T) {
	t.Parallel()
	mk := read(t, "Makefile")
	m := regexp.MustCompile(`(?m)^SHELL\s*:?=\s*(\S+)\s*$`).FindStringSubmatch(mk)
	if m == nil || m[1] != "/bin/sh" {
		t.Fatalf("Makefile: SHELL is %v, want SHELL := /bin/sh", m)
	}
	if strings.Contains(mk, "bash") {
		t.Error("Makefile mentions bash")
	}
	testdeb.Need(t, "make", "make")
	cmd := exec.Command("make", "-s", "help")
	cmd.Dir = root(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cross") || !strings.Contains(string(out), "flavours") {
		t.Fatalf("make help: %v\n%s", err, out)
	}
}

func read(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNginxConf runs nginx -t on deploy/freebsd/nginx.conf as shipped,
// with only the pid and log files moved to a temp dir and its
// certificate's paths pointed at one the test made (nginx -t loads it).
// Its TLS server speaks TLS 1.2 and 1.3 only, HTTP/2, and sends HSTS.
func TestNginxConf(t *testing.T) {
	t.Parallel()
	nginx := testdeb.Need(t, "nginx", "nginx")
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	leaf := testx509.NewCA(t, dir, "test").Issue(t, dir, "gbb", testx509.Options{DNSNames: []string{"ci.example.org"}})
	shipped := read(t, "deploy/freebsd/nginx.conf")
	for _, p := range []string{"/usr/local/etc/ssl/gbb/fullchain.pem", "/usr/local/etc/ssl/gbb/privkey.pem"} {
		if !strings.Contains(shipped, p) {
			t.Fatalf("nginx.conf does not name %s", p)
		}
	}
	shipped = strings.NewReplacer("/usr/local/etc/ssl/gbb/fullchain.pem", leaf.CertFile, "/usr/local/etc/ssl/gbb/privkey.pem", leaf.KeyFile).Replace(shipped)
	if err := os.WriteFile(conf, []byte(shipped), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", dir, "-c", conf,
		"-g", fmt.Sprintf("pid %s/nginx.pid; error_log %s/error.log;", dir, dir)).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("test is successful")) {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	c := read(t, "deploy/freebsd/nginx.conf")
	for _, want := range []string{"proxy_pass http://10.1.1.2:8010/;", "proxy_buffering off;", "proxy_set_header Upgrade $http_upgrade;", "proxy_read_timeout 1h;"} {
		if !strings.Contains(c, want) {
			t.Errorf("nginx.conf lacks %q", want)
		}
	}
	top := parseNginx(t, c)
	tlsServers := 0
	top.walk(func(b *nginxBlock) {
		if b.has("ssl_protocols", "TLSv1.2", "TLSv1.3") && b.has("ssl_prefer_server_ciphers", "off") {
			for _, d := range b.directives {
				if d[0] == "ssl_ciphers" && (strings.Contains(d[1], "CBC") || strings.Contains(d[1], "SHA:") || !strings.Contains(d[1], "ECDHE-RSA-AES128-GCM-SHA256")) {
					t.Errorf("nginx.conf: ssl_ciphers %s: want ECDHE with AEAD only, HTTP/2's required suite included", d[1])
				}
			}
		}
		if len(b.head) == 0 || b.head[0] != "server" || !b.has("listen", "443", "ssl", "http2") {
			return
		}
		tlsServers++
		for _, want := range [][]string{
			{"ssl_certificate", "/usr/local/etc/ssl/gbb/fullchain.pem"},
			{"ssl_certificate_key", "/usr/local/etc/ssl/gbb/privkey.pem"},
			{"add_header", "Strict-Transport-Security", `"max-age=15552000"`, "always"},
		} {
			if !b.has(want...) {
				t.Errorf("nginx.conf: the TLS server lacks %s", strings.Join(want, " "))
			}
		}
	})
	if tlsServers != 1 {
		t.Errorf("nginx.conf: %d servers listen on 443 ssl http2, want 1", tlsServers)
	}
	if !top.blocks[1].has("ssl_protocols", "TLSv1.2", "TLSv1.3") {
		t.Error("nginx.conf: http{} does not limit ssl_protocols to TLSv1.2 TLSv1.3")
	}
}

// TestSystemdVerify runs systemd-analyze verify on the units, with their
// /usr/local/bin paths pointed at freshly built binaries (verify checks
// that ExecStart's program exists). Any warning fails the test.
func TestSystemdVerify(t *testing.T) {
	t.Parallel()
	sa := testdeb.Need(t, "systemd-analyze", "systemd")
	bin := binaries(t)
	dir := t.TempDir()
	var units []string
	for _, u := range []string{"gbb-master.service", "gbb-worker.service"} {
		text := strings.ReplaceAll(read(t, "deploy/linux/"+u), "/usr/local/bin/", bin+"/")
		for _, want := range []string{"Type=simple", "--nodaemon", "ProtectSystem=strict", "ReadWritePaths=/var/lib/gbb-", "NoNewPrivileges=yes", "PrivateTmp=yes", "User=gbb"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %s", u, want)
			}
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	if !strings.Contains(read(t, "deploy/linux/gbb-master.service"), "ExecReload=/usr/local/bin/gbb-master reconfig /var/lib/gbb-master") {
		t.Error("gbb-master.service: ExecReload must be gbb-master reconfig")
	}
	cmd := exec.Command(sa, append([]string{"verify"}, units...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestFlavourMasterConfig: the master.toml the gbb-master flavour ships
// passes gbb-master checkconfig, with its password file made here.
func TestFlavourMasterConfig(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	pass := filepath.Join(dir, "worker0.pass")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := read(t, "deploy/freebsd/flavours/gbb-master/var/db/gbb/master.toml")
	const shipped = `password_file = "/usr/local/etc/gbb/worker0.pass"`
	if !strings.Contains(src, shipped) {
		t.Fatalf("master.toml lacks %s", shipped)
	}
	src = strings.Replace(src, shipped, fmt.Sprintf("password_file = %q", pass), 1)
	if err := os.WriteFile(filepath.Join(dir, "master.toml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(bin, "gbb-master"), "checkconfig", dir).CombinedOutput(); err != nil {
		t.Fatalf("gbb-master checkconfig on the flavour's master.toml: %v\n%s", err, out)
	}
}

// TestMakeFlavours runs make flavours on stand-in binaries and checks the
// tree ezjail copies into a new jail.
func TestMakeFlavours(t *testing.T) {
	t.Parallel()
	testdeb.Need(t, "make", "make")
	dist := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dist, "freebsd-amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"gbb-master", "gbb-worker"} {
		if err := os.WriteFile(filepath.Join(dist, "freebsd-amd64", b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("make", "-s", "flavours", "DIST="+dist)
	cmd.Dir = root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make flavours: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"gbb-master/ezjail.flavour":                                 0o755,
		"gbb-master/etc/rc.conf":                                    0o644,
		"gbb-master/etc/resolv.conf":                                0o644,
		"gbb-master/var/db/gbb/master.toml":                         0o644,
		"gbb-master/usr/local/bin/gbb-master":                       0o555,
		"gbb-master/usr/local/etc/rc.d/gbb_master":                  0o555,
		"gbb-master/usr/local/etc/newsyslog.conf.d/gbb_master.conf": 0o644,
		"gbb-master/usr/local/libexec/gbb_master_reopenlogs":        0o755,
		"gbb-worker/ezjail.flavour":                                 0o755,
		"gbb-worker/etc/rc.conf":                                    0o644,
		"gbb-worker/etc/resolv.conf":                                0o644,
		"gbb-worker/usr/local/bin/gbb-worker":                       0o555,
		"gbb-worker/usr/local/etc/rc.d/gbb_worker":                  0o555,
		"gbb-worker/usr/local/etc/newsyslog.conf.d/gbb_worker.conf": 0o644,
		"gbb-worker/usr/local/libexec/gbb_worker_reopenlogs":        0o755,
	} {
		fi, err := os.Stat(filepath.Join(dist, "flavours", path))
		if err != nil {
			t.Errorf("make flavours: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("make flavours: %s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
}

// TestGuide checks deploy/freebsd/README.md for the faults a reader found
// following it on a fresh FreeBSD host: commands that copy files step 1
// did not send, curl used before it is installed, a force read as if it
// waited for the build, gateway_enable, no minimum FreeBSD version, and
// sh syntax under root's csh.
func TestGuide(t *testing.T) {
	t.Parallel()
	guide := read(t, "deploy/freebsd/README.md")
	var blocks []string // the sh code blocks after step 1, in order
	step1 := true
	for _, part := range strings.Split(guide, "\n```")[1:] {
		if strings.HasPrefix(part, "sh\n") && !step1 {
			blocks = append(blocks, strings.TrimPrefix(part, "sh\n"))
		}
		if strings.Contains(part, "\n## 2. ") {
			step1 = false
		}
	}
	if len(blocks) < 8 {
		t.Fatalf("found %d sh blocks after step 1; the guide's layout changed", len(blocks))
	}
	curlInstalled := false
	for _, b := range blocks {
		for _, line := range strings.Split(b, "\n") {
			if strings.Contains(line, "deploy/") || strings.Contains(line, "dist/") {
				t.Errorf("guide: %q uses a file of the source tree; the host has only what step 1 sends (jailhost.tar)", line)
			}
			if strings.Contains(line, "pkg install curl") {
				curlInstalled = true
			}
			if strings.HasPrefix(line, "curl ") && !curlInstalled {
				t.Errorf("guide: %q before pkg install curl (curl is not in base)", line)
			}
		}
	}
	force := strings.Index(guide, `"method":"force"`)
	if force < 0 || !regexp.MustCompile(`until curl -s \S+/buildrequests/1 \| grep -q 'complete.: \*true'`).MatchString(guide[force:]) {
		t.Error("guide: the force is not followed by a wait until its build request is complete")
	}
	for _, f := range []string{"deploy/freebsd/README.md", "deploy/freebsd/pf.conf"} {
		if strings.Contains(read(t, f), "gateway_enable=YES") {
			t.Errorf("%s: gateway_enable=YES (the jails' traffic is not forwarded)", f)
		}
	}
	for _, want := range []string{"**FreeBSD 13 or newer**", "**Every command runs in csh and in sh.**", "[www.auth]", "JR    /usr/local/libexec/gbb_master_reopenlogs"} {
		if !strings.Contains(guide, want) {
			t.Errorf("guide lacks %s", want)
		}
	}
	if strings.Index(guide, "[www.auth]") > strings.Index(guide, "## 7. nginx") {
		t.Error("guide: [www.auth] must come before nginx publishes port 80 (step 7)")
	}
	if !strings.Contains(read(t, "deploy/freebsd/pf.conf"), "ipv6-icmp icmp6-type { neighbrsol, neighbradv") {
		t.Error("pf.conf does not pass ICMPv6 neighbour discovery")
	}
}

// nginxBlock is a block of an nginx.conf: its directives (each a list of
// words, the name first) and its child blocks.
type nginxBlock struct {
	head       []string // "location", "/buildbot/" ...; nil at the top
	directives [][]string
	blocks     []*nginxBlock
}

// parseNginx parses nginx.conf's structure: words, ";", "{" and "}", with
// comments dropped. Quoted strings are kept whole, quotes included.
func parseNginx(t testing.TB, text string) *nginxBlock {
	t.Helper()
	top := &nginxBlock{}
	stack := []*nginxBlock{top}
	var words []string
	word := regexp.MustCompile(`"[^"]*"|'[^']*'|[^\s;{}"']+|[;{}]`)
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 && !strings.ContainsAny(line[:i], `"'`) {
			line = line[:i]
		}
		for _, w := range word.FindAllString(line, -1) {
			cur := stack[len(stack)-1]
			switch w {
			case ";":
				cur.directives = append(cur.directives, words)
				words = nil
			case "{":
				b := &nginxBlock{head: words}
				cur.blocks = append(cur.blocks, b)
				stack = append(stack, b)
				words = nil
			case "}":
				if len(stack) == 1 || len(words) > 0 {
					t.Fatalf("nginx.conf: unbalanced } after %q", words)
				}
				stack = stack[:len(stack)-1]
			default:
				words = append(words, w)
			}
		}
	}
	if len(stack) != 1 || len(words) > 0 {
		t.Fatalf("nginx.conf: unterminated block or directive %q", words)
	}
	return top
}

// walk calls f on b and every block below it.
func (b *nginxBlock) walk(f func(*nginxBlock)) {
	f(b)
	for _, c := range b.blocks {
		c.walk(f)
	}
}

// has reports whether b holds the directive with exactly these words.
func (b *nginxBlock) has(words ...string) bool {
	for _, d := range b.directives {
		if slices.Equal(d, words) {
			return true
		}
	}
	return false
}

// TestNginxForwarded: every location of nginx.conf that proxies to the
// master sets X-Forwarded-For (and Host and X-Forwarded-Proto). nginx
// inherits proxy_set_header only into a location that sets none, so a
// location with its own (the sse and ws ones) and no X-Forwarded-For
// passed the client's forged header on, and with trusted_proxies each
// forged address had a fresh budget of password guesses. nginx connects
// from 10.1.1.1 (proxy_bind), the host's address on lo1 in the guide,
// not from the master jail's own 10.1.1.2.
func TestNginxForwarded(t *testing.T) {
	t.Parallel()
	conf := parseNginx(t, read(t, "deploy/freebsd/nginx.conf"))
	proxies := 0
	conf.walk(func(b *nginxBlock) {
		if len(b.head) > 0 && b.head[0] == "server" && !b.has("proxy_bind", "10.1.1.1") {
			t.Errorf("nginx.conf: server %v has no proxy_bind 10.1.1.1: the master would see nginx as the jail's own 10.1.1.2", b.head)
		}
		proxied := false
		for _, d := range b.directives {
			proxied = proxied || d[0] == "proxy_pass"
		}
		if !proxied {
			return
		}
		proxies++
		for _, want := range [][]string{
			{"proxy_set_header", "X-Forwarded-For", "$proxy_add_x_forwarded_for"},
			{"proxy_set_header", "Host", "$http_host"},
			{"proxy_set_header", "X-Forwarded-Proto", "$scheme"},
		} {
			if !b.has(want...) {
				t.Errorf("nginx.conf: %v proxies but lacks %s", b.head, strings.Join(want, " "))
			}
		}
	})
	if proxies < 3 {
		t.Errorf("nginx.conf: %d locations with proxy_pass, want the /buildbot/, sse and ws ones", proxies)
	}
	guide := read(t, "deploy/freebsd/README.md")
	if !strings.Contains(guide, `sysrc ifconfig_lo1="inet 10.1.1.1/24"`) {
		t.Error("guide: lo1 does not give the host 10.1.1.1, which nginx's proxy_bind needs")
	}
	if regexp.MustCompile(`trusted_proxies\s*=\s*\[[^\]]*10\.1\.1\.2`).MatchString(guide) {
		t.Error("guide: trusted_proxies names 10.1.1.2, the master jail's own address")
	}
	if !strings.Contains(guide, `trusted_proxies = ["10.1.1.1"]`) {
		t.Error(`guide: no trusted_proxies = ["10.1.1.1"]`)
	}
}

// guideShBlocks returns the guide's fenced sh blocks (list items' too,
// their indentation removed), each with the line it starts on.
func guideShBlocks(t testing.TB, guide string) (blocks []string, lines []int) {
	t.Helper()
	var cur []string
	indent, start := "", 0
	in := false
	for i, l := range strings.Split(guide, "\n") {
		trimmed := strings.TrimLeft(l, " ")
		switch {
		case !in && trimmed == "```sh":
			in, indent, start, cur = true, l[:len(l)-len(trimmed)], i+2, nil
		case in && trimmed == "```":
			in = false
			blocks, lines = append(blocks, strings.Join(cur, "\n")+"\n"), append(lines, start)
		case in:
			cur = append(cur, strings.TrimPrefix(l, indent))
		}
	}
	if in {
		t.Fatalf("guide: the sh block of line %d is not closed", start)
	}
	return blocks, lines
}

// unquoted returns line with what single and double quotes enclose (and
// backslash escapes) replaced by "Q", as csh and sh both read them.
func unquoted(line string) string {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case '\'', '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				return b.String() + line[i:]
			}
			b.WriteString("Q")
			i += j + 1
		case '\\':
			b.WriteString("Q")
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// cshHazards are what tcsh -n does not catch but an interactive csh reads
// otherwise than sh, outside quotes.
var cshHazards = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`\$\(`), "$(...) is sh's: csh says Illegal variable name (use backquotes)"},
	{regexp.MustCompile(`^\s*(until|while|for|if|case|export|function)\b`), "a compound command of sh: wrap it in sh -c \"...\""},
	{regexp.MustCompile(`(^|\s)#`), "an interactive csh takes # as an argument, not a comment"},
	{regexp.MustCompile(`[0-9]>|>&[0-9]|<<`), "sh's redirection"},
	{regexp.MustCompile(`^\s*\w+=\S*\s`), "VAR=value before a command is sh's"},
	{regexp.MustCompile(`[*?\[]`), "an unquoted pattern: csh fails with No match when nothing matches"},
}

// TestGuideShells: every sh block of the guide runs in sh and in root's
// csh (FreeBSD 13), since a reader of a later section may have a new
// login shell: dash -n and tcsh -n parse it, the script of each sh -c
// "..." parses in dash, and nothing outside quotes is read differently by
// an interactive csh.
func TestGuideShells(t *testing.T) {
	t.Parallel()
	dash := testdeb.Need(t, "dash", "dash")
	tcsh := testdeb.Need(t, "tcsh", "tcsh")
	guide := read(t, "deploy/freebsd/README.md")
	blocks, starts := guideShBlocks(t, guide)
	if len(blocks) < 15 {
		t.Fatalf("found %d sh blocks in the guide; its layout changed", len(blocks))
	}
	dir := t.TempDir()
	shc := regexp.MustCompile(`\bsh -c "([^"]*)"`)
	for i, b := range blocks {
		where := fmt.Sprintf("guide, the sh block of line %d", starts[i])
		f := filepath.Join(dir, fmt.Sprintf("block%d", i))
		if err := os.WriteFile(f, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(dash, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s: dash -n: %v\n%s%s", where, err, out, b)
		}
		if out, err := exec.Command(tcsh, "-f", "-n", f).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: tcsh -n: %v\n%s%s", where, err, out, b)
		}
		for _, m := range shc.FindAllStringSubmatch(b, -1) {
			if out, err := exec.Command(dash, "-n", "-c", m[1]).CombinedOutput(); err != nil {
				t.Errorf("%s: dash -n -c %q: %v\n%s", where, m[1], err, out)
			}
		}
		for _, line := range strings.Split(b, "\n") {
			if strings.Contains(line, "!") {
				t.Errorf("%s: %q: csh expands ! (history) even inside quotes", where, line)
			}
			u := unquoted(line)
			for _, h := range cshHazards {
				if h.re.MatchString(u) {
					t.Errorf("%s: %q: %s", where, line, h.why)
				}
			}
		}
	}
}

// TestPfConf: pf filters lo1 (build code in a worker jail must not reach
// the host's services through 10.1.1.1, nor the master's web API), passing
// only nginx's connections from the address nginx.conf binds to the
// master's web port, the workers' to the master's worker port, and each
// jail's to itself; and blocks the jails' network on lo0, the way to the
// host's outside address. There is no pfctl here: the file's rules are
// checked as text.
func TestPfConf(t *testing.T) {
	t.Parallel()
	pf := read(t, "deploy/freebsd/pf.conf")
	var rules []string
	for _, l := range strings.Split(pf, "\n") {
		if l, _, _ = strings.Cut(l, "#"); strings.TrimSpace(l) != "" {
			rules = append(rules, strings.Join(strings.Fields(l), " "))
		}
	}
	for _, r := range rules {
		if strings.HasPrefix(r, "set skip") {
			t.Errorf("pf.conf: %q: a skipped loopback interface is not filtered", r)
		}
	}
	macros := map[string]string{}
	for _, r := range rules {
		if k, v, ok := strings.Cut(r, " = "); ok {
			macros[k] = strings.Trim(v, `"`)
		}
	}
	for k, want := range map[string]string{"host_lo1": "10.1.1.1", "master": "10.1.1.2", "workers": "{ 10.1.1.3 }", "jail_net": "10.1.1.0/24"} {
		if macros[k] != want {
			t.Errorf("pf.conf: %s = %q, want %q", k, macros[k], want)
		}
	}
	parseNginx(t, read(t, "deploy/freebsd/nginx.conf")).walk(func(b *nginxBlock) {
		if len(b.head) > 0 && b.head[0] == "server" && !b.has("proxy_bind", macros["host_lo1"]) {
			t.Errorf("nginx.conf: server %v: proxy_bind is not pf.conf's host_lo1 %s", b.head, macros["host_lo1"])
		}
	})
	want := []string{
		"block quick on lo0 inet from $jail_net to any",
		"block on lo1 all",
		"pass on lo1 inet from $master to $master",
		"pass on lo1 inet from $workers to $workers",
		"pass on lo1 inet proto tcp from $host_lo1 to $master port 8010",
		"pass on lo1 inet proto tcp from $workers to $master port 9989",
	}
	var got []string
	for _, r := range rules {
		if strings.Contains(r, " on lo") {
			got = append(got, r)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pf.conf: the rules on lo0 and lo1 (-want +got):\n%s", diff)
	}
}
