package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// BuildbotUI is what [www] says of buildbot's own web app (its React UI),
// which gbb can serve in front of its API (see web/bbui).
type BuildbotUI struct {
	// Dir is buildbot_ui_dir: the directory of an installed buildbot UI,
	// the one holding its index.html (pip's buildbot-www-react puts it in
	// buildbot_www_react/static), served at /buildbot-ui/; relative to the
	// config file's directory. "" (the default) serves none.
	Dir string
	// AvatarMethods is avatar_methods, as buildbot's www avatar_methods:
	// how /avatar answers, the first method that knows: "identicon" (a
	// picture drawn from the email, offline) or "gravatar" (a redirect to
	// gravatar.com). Nil (unset) means ["identicon"]; an empty list means
	// no avatars (the UI shows none).
	AvatarMethods []string
	// AtRoot is buildbot_ui_at_root: the UI is served at the site's root
	// and gbb's own pages under /gbb/ (the API, /ws, /sse/, /auth/,
	// /change_hook/ and /avatar stay at the root). False (the default)
	// serves the UI at /buildbot-ui/ and gbb's pages at the root. It
	// needs Dir.
	AtRoot bool
}

// AvatarMethodNames are the avatar_methods gbb knows.
var AvatarMethodNames = []string{"identicon", "gravatar"}

// buildbotUI reads buildbot_ui_dir, buildbot_ui_at_root and
// avatar_methods of [www].
func (d *decoder) buildbotUI(t *table, w *WWW) {
	if dir, ok := t.str("buildbot_ui_dir"); ok && dir != "" {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(d.dir, dir)
		}
		if fi, err := os.Stat(filepath.Join(dir, "index.html")); err != nil || !fi.Mode().IsRegular() {
			t.errorf("buildbot_ui_dir", "%s has no index.html: give the static directory of an installed buildbot UI (buildbot_www_react/static)", dir)
		} else {
			w.BuildbotUI.Dir = dir
		}
	}
	if at, ok := t.boolean("buildbot_ui_at_root"); ok && at {
		if w.BuildbotUI.Dir == "" && !t.has("buildbot_ui_dir") {
			t.errorf("buildbot_ui_at_root", "there is no buildbot UI to serve at the root: set buildbot_ui_dir too")
		}
		w.BuildbotUI.AtRoot = true
	}
	if ms, ok := t.strings("avatar_methods"); ok {
		for _, m := range ms {
			if !slices.Contains(AvatarMethodNames, m) {
				t.errorf("avatar_methods", "unknown avatar method %q (want %s)", m, strings.Join(AvatarMethodNames, " or "))
			}
		}
		w.BuildbotUI.AvatarMethods = append([]string{}, ms...)
	}
}
