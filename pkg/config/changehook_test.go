package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChangeHooks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gitea.secret"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `
[www]
port = 8010

[www.change_hook.github]
secret = "gh"

[www.change_hook.gitlab]
secret = "gl"

[www.change_hook.gitea]
secret_file = "gitea.secret"

[www.change_hook.base]
`
	cfg := mustParse(t, filepath.Join(dir, "master.toml"), src)
	want := map[string]ChangeHook{
		"github": {Dialect: "github", Secret: "gh", Line: lineOf(t, src, "[www.change_hook.github]", 0)},
		"gitlab": {Dialect: "gitlab", Secret: "gl", Line: lineOf(t, src, "[www.change_hook.gitlab]", 0)},
		"gitea":  {Dialect: "gitea", Secret: "s3cret", SecretFile: "gitea.secret", Line: lineOf(t, src, "[www.change_hook.gitea]", 0)},
		"base":   {Dialect: "base", Line: lineOf(t, src, "[www.change_hook.base]", 0)},
	}
	if diff := cmp.Diff(want, cfg.WWW.ChangeHooks); diff != "" {
		t.Errorf("ChangeHooks (-want +got):\n%s", diff)
	}

	if got := mustParse(t, "master.toml", "[www]\nport = 8010\n").WWW.ChangeHooks; got != nil {
		t.Errorf("no change_hook table: ChangeHooks = %v, want nil", got)
	}
}

func TestChangeHookErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown dialect", "[www.change_hook.bitbucket]\nsecret = \"x\"\n",
			[]string{`master.toml:1: www.change_hook.bitbucket: unknown change hook dialect "bitbucket" (want one of base, gitea, github, gitlab)`}},
		{"unknown key", "[www.change_hook.github]\nsecret = \"x\"\nstrict = true\n",
			[]string{"master.toml:3: www.change_hook.github.strict: unknown key"}},
		{"both secrets", "[www.change_hook.gitlab]\nsecret = \"x\"\nsecret_file = \"f\"\n",
			[]string{"master.toml:3: www.change_hook.gitlab.secret_file: set either secret or secret_file, not both"}},
		{"empty secret", "[www.change_hook.gitea]\nsecret = \"\"\n",
			[]string{"master.toml:2: www.change_hook.gitea.secret: must not be empty (leave it out to accept unsigned requests)"}},
		{"secret type", "[www.change_hook.base]\nsecret = 3\n",
			[]string{"master.toml:2: www.change_hook.base.secret: expected a string, got integer"}},
		{"missing secret file", "[www.change_hook.github]\nsecret_file = \"/nonexistent/gbb.secret\"\n",
			[]string{"master.toml:2: www.change_hook.github.secret_file: read /nonexistent/gbb.secret: no such file or directory"}},
		{"not a table", "[www]\nchange_hook = 1\n",
			[]string{"master.toml:2: www.change_hook: expected a table, got integer"}},
		{"dialect not a table", "[www.change_hook]\ngithub = true\n",
			[]string{"master.toml:2: www.change_hook.github: expected a table, got boolean"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("master.toml", []byte(tt.src))
			var got []string
			for _, e := range Errors(err) {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s\nall: %s", diff, strings.Join(got, "\n"))
			}
		})
	}
}
