package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTransfersRefuseMasterFiles: a transfer step whose literal masterdest
// or mastersrc names one of the master's own files (the config, the store,
// the log, the pid file, a secrets directory, the files the config read),
// directly, through a symlink or through "..", is a config error naming
// the step, the path and what it is; other paths, and rendered ones, load.
func TestTransfersRefuseMasterFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("w.pass", "pw\n")
	write("htpasswd", "alice:"+testHash+"\n")
	write("priv/secrets/token", "s3cret\n")
	write("sub/keep", "")
	write("hook.secret", "hook\n")
	write("keys/id_poller", "key\n")
	write("keys/known_hosts", "example.invalid ssh-ed25519 AAAA\n")
	for link, target := range map[string]string{"here": ".", "cfg": "master.toml", "sub/up": ".."} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		typ, key, path string
		what           string // "" when the step loads
	}{
		{"file_upload", "masterdest", "master.toml", "the master's config file"},
		{"file_download", "mastersrc", "master.toml", "the master's config file"},
		{"file_download", "mastersrc", "master.toml.bak", "the master's config file"},
		{"file_upload", "masterdest", "state.db", "the master's store"},
		{"file_download", "mastersrc", "state.db.bak", "the master's store"},
		{"file_download", "mastersrc", "master.log", "the master's log"},
		{"file_upload", "masterdest", "master.pid", "the master's pid file"},
		{"file_download", "mastersrc", "priv/secrets/token", "the secrets directory of secrets_providers[0]"},
		{"directory_upload", "masterdest", "priv/secrets", "the secrets directory of secrets_providers[0]"},
		{"directory_upload", "masterdest", "priv", "holds the secrets directory"},
		{"directory_upload", "masterdest", ".", "the master's basedir"},
		{"file_download", "mastersrc", "w.pass", "the workers[0].password_file file"},
		{"file_download", "mastersrc", "htpasswd", "the www.auth.file file"},
		{"file_download", "mastersrc", "here/master.toml", "symlinks resolved"},
		{"file_download", "mastersrc", "cfg", "the master's config file"},
		{"file_download", "mastersrc", "sub/../master.toml", "the master's config file"},
		{"file_download", "mastersrc", "sub/up/master.toml", "the master's config file"},
		{"file_upload", "masterdest", "sub/up/here/priv/secrets/new", "the secrets directory"},
		{"file_download", "mastersrc", "hook.secret", "the www.change_hook.github.secret_file file"},
		{"file_download", "mastersrc", "keys/id_poller", "the change_source[0].ssh_private_key_file file"},
		{"file_upload", "masterdest", "keys/known_hosts", "the change_source[0].ssh_known_hosts_file file"},
		{"file_download", "mastersrc", "mirror/HEAD", `the mirror of change_source[0] "poller"`},
		{"file_download", "mastersrc", "/etc/passwd", "absolute"},
		{"file_upload", "masterdest", "artifacts/out.txt", ""},
		{"file_download", "mastersrc", "sub/master.toml", ""},
		{"directory_upload", "masterdest", "sub", ""},
		{"file_download", "mastersrc", "%(prop:src)s", ""}, // checked when it runs
	}
	var steps strings.Builder
	for i, tt := range tests {
		other := map[string]string{"masterdest": `workersrc = "x"`, "mastersrc": `workerdest = "x"`}[tt.key]
		steps.WriteString("  [[builders.steps]]\n  type = \"" + tt.typ + "\"\n  name = \"s" + string(rune('a'+i)) + "\"\n  " +
			tt.key + " = \"" + tt.path + "\"\n  " + other + "\n")
	}
	src := `[[workers]]
name = "w"
password_file = "w.pass"
[www.auth]
type = "htpasswd"
file = "htpasswd"
[www.change_hook.github]
secret_file = "hook.secret"
[[change_source]]
type = "git_poller"
name = "poller"
repourl = "git@example.invalid:x.git"
workdir = "mirror"
ssh_private_key_file = "keys/id_poller"
ssh_known_hosts_file = "keys/known_hosts"
[[secrets_providers]]
type = "file"
dirname = "priv/secrets"
[[builders]]
name = "b"
worker_names = ["w"]
` + steps.String()
	file := filepath.Join(dir, "master.toml")
	write("master.toml", src)
	_, err := Load(file)
	errs := Errors(err)
	for i, tt := range tests {
		key := "builders[0].steps[" + string(rune('0'+i%10)) + "]"
		if i >= 10 {
			key = "builders[0].steps[" + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "]"
		}
		key += "." + tt.key
		j := slices.IndexFunc(errs, func(e *Error) bool { return e.Key == key })
		switch {
		case tt.what == "" && j >= 0:
			t.Errorf("%s %s = %q refused: %v", tt.typ, tt.key, tt.path, errs[j])
		case tt.what != "" && j < 0:
			t.Errorf("%s %s = %q loads, want it refused as %s", tt.typ, tt.key, tt.path, tt.what)
		case tt.what != "":
			msg := errs[j].Error()
			wants := []string{`step "s` + string(rune('a'+i)) + `"`, tt.what, "transfers may not touch the master's own files"}
			if tt.what == "absolute" {
				wants = []string{"is absolute or leaves its directory"} // refused as before
			}
			for _, want := range wants {
				if !strings.Contains(msg, want) {
					t.Errorf("%s = %q: error %q does not say %q", tt.key, tt.path, msg, want)
				}
			}
		}
	}
	if len(errs) != 23 {
		t.Errorf("%d errors, want 23:\n%v", len(errs), err)
	}
}
