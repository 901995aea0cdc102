package config

import (
	"slices"
	"strings"
)

// ChangeHookDialects are the dialects [www.change_hook.NAME] accepts, as
// buildbot's change_hook_dialects: the forges' webhooks and "base", the plain
// form or JSON of one change that gbb-master sendchange posts.
var ChangeHookDialects = []string{"base", "gitea", "github", "gitlab"}

// ChangeHook is one [www.change_hook.DIALECT] table: it enables
// POST /change_hook/DIALECT. A dialect without a table is disabled.
type ChangeHook struct {
	Dialect string // the table's name: one of ChangeHookDialects
	// Secret is secret, or the content of SecretFile: github and gitea check
	// the body's HMAC-SHA256 with it, gitlab compares it with X-Gitlab-Token,
	// base requires it as "Authorization: Bearer SECRET". Empty (the
	// default) means requests are not checked.
	Secret     string
	SecretFile string // secret_file: read at load time (trailing newline trimmed) into Secret; not with secret; relative to the config file's directory
	Codebase   string // codebase: set on the changes the hook makes (buildbot's hook option codebase); a request's ?codebase= overrides it; default ""
	Line       int    // line of the table
}

// changeHooks reads the change_hook table of [www] into a map by dialect,
// or nil when there is none.
func (d *decoder) changeHooks(www *table) map[string]ChangeHook {
	t, ok := www.sub("change_hook")
	if !ok {
		return nil
	}
	out := map[string]ChangeHook{}
	names := make([]string, 0, len(t.m))
	for name := range t.m {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(ChangeHookDialects, name) {
			t.ignore(name)
			t.errorf(name, "unknown change hook dialect %q (want one of %s)", name, strings.Join(ChangeHookDialects, ", "))
			continue
		}
		h, ok := t.sub(name)
		if !ok {
			continue
		}
		out[name] = d.changeHook(h, name)
	}
	t.done()
	return out
}

func (d *decoder) changeHook(t *table, dialect string) ChangeHook {
	h := ChangeHook{Dialect: dialect, Line: t.line()}
	h.Codebase, _ = t.str("codebase")
	secret, hasSecret := t.str("secret")
	file, hasFile := t.str("secret_file")
	switch {
	case t.has("secret") && t.has("secret_file"):
		t.errorf("secret_file", "set either secret or secret_file, not both")
	case hasSecret:
		if secret == "" {
			t.errorf("secret", "must not be empty (leave it out to accept unsigned requests)")
		}
		h.Secret = secret
	case hasFile:
		h.SecretFile = file
		h.Secret = d.readSecretFile(t, file)
	}
	t.done()
	return h
}

// readSecretFile reads the secret_file of t.
func (d *decoder) readSecretFile(t *table, file string) string {
	return d.readKeyFile(t, "secret_file", file)
}
