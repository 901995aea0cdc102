package config

import (
	"path/filepath"

	"github.com/gbb-ci/gbb/pkg/secrets"
)

// SecretsProvider is one [[secrets_providers]] table: where %(secret:NAME)s
// finds its values. Providers are asked in config order.
type SecretsProvider struct {
	Type string // type: "file" (buildbot's SecretInAFile) or "env"
	// Dirname is dirname, for type "file": the directory holding one file
	// per secret, which neither it nor its files may let group or others
	// read or write; relative to the config file's directory, and made
	// absolute at load time.
	Dirname string
	Prefix  string // prefix, for type "env": the secret NAME is the variable PREFIX+NAME; "" (the default) means none
	Line    int    // line of the table
}

func (d *decoder) secretsProvider(t *table) SecretsProvider {
	p := SecretsProvider{Line: t.line()}
	typ, ok := t.oneOf("type", "secrets provider type", "file", "env")
	p.Type = typ
	switch {
	case !ok:
		t.ignore("dirname", "prefix")
	case typ == "file":
		if dir, ok := t.required("dirname"); ok {
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(d.dir, dir)
			}
			if abs, err := filepath.Abs(dir); err == nil {
				dir = abs
			}
			if err := secrets.CheckDir(dir); err != nil {
				t.errorf("dirname", "%v", err)
			}
			p.Dirname = dir
		}
		if t.has("prefix") {
			t.ignore("prefix")
			t.errorf("prefix", "not allowed for a file provider")
		}
	case typ == "env":
		p.Prefix, _ = t.str("prefix")
		if t.has("dirname") {
			t.ignore("dirname")
			t.errorf("dirname", "not allowed for an env provider")
		}
	}
	t.done()
	return p
}
