package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildbotUIConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ui := filepath.Join(dir, "www", "static")
	if err := os.MkdirAll(ui, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ui, "index.html"), []byte("<html></html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "master.toml")
	for _, tc := range []struct {
		name, src string
		want      BuildbotUI
		errs      []string
	}{
		{"unset", "", BuildbotUI{}, nil},
		{"relative", "[www]\nbuildbot_ui_dir = \"www/static\"\navatar_methods = [\"gravatar\", \"identicon\"]\n",
			BuildbotUI{Dir: ui, AvatarMethods: []string{"gravatar", "identicon"}}, nil},
		{"absolute, no avatars", "[www]\nbuildbot_ui_dir = \"" + ui + "\"\navatar_methods = []\n", BuildbotUI{Dir: ui, AvatarMethods: []string{}}, nil},
		{"at the root", "[www]\nbuildbot_ui_dir = \"www/static\"\nbuildbot_ui_at_root = true\n", BuildbotUI{Dir: ui, AtRoot: true}, nil},
		{"at the root without a UI", "[www]\nbuildbot_ui_at_root = true\n", BuildbotUI{}, []string{
			"master.toml:2: www.buildbot_ui_at_root: there is no buildbot UI to serve at the root: set buildbot_ui_dir too",
		}},
		{"bad", "[www]\nbuildbot_ui_dir = \"www\"\navatar_methods = [\"github\"]\n", BuildbotUI{}, []string{
			"master.toml:2: www.buildbot_ui_dir: " + filepath.Join(dir, "www") + " has no index.html",
			`master.toml:3: www.avatar_methods: unknown avatar method "github" (want identicon or gravatar)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(file, []byte(tc.src))
			if tc.errs != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q lacks %q", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cfg.WWW.BuildbotUI); diff != "" {
				t.Errorf("BuildbotUI (-want +got):\n%s", diff)
			}
		})
	}
}
