package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/pkg/interpolate"
)

// The files every master keeps in its basedir besides the config and the
// store (DESIGN.md: "files in DIR").
const (
	LogFile = "master.log"
	PidFile = "master.pid"
)

// MasterFiles returns the master's own files, which transfer steps may not
// read nor write: the config file, the store, the log and the pid file
// (each with the copies made beside it), the git pollers' mirrors, the
// secrets providers' directories, every file the config read
// (password_file, secret_file, htpasswd, ssh_private_key_file), and every
// path an include pattern matches, existing or not.
func (c *Config) MasterFiles(basedir string) []masterfiles.File {
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(basedir, p)
		}
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return filepath.Clean(p)
	}
	cfgFile := c.File
	if cfgFile == "" {
		cfgFile = "master.toml"
	}
	files := []masterfiles.File{
		{Path: abs(cfgFile), What: "the master's config file", Suffixed: true},
		{Path: abs(LogFile), What: "the master's log", Suffixed: true},
		{Path: abs(PidFile), What: "the master's pid file", Suffixed: true},
		// create-master writes the CA of tls = "auto" there whatever tls
		// says now: a later switch to auto makes it the live CA.
		{Path: abs(AutoTLSDir), Dir: true, What: `the directory of tls = "auto"'s CA and keys`},
	}
	if c.DB.IsBolt() {
		// A PostgreSQL store has no file here to guard.
		files = append(files, masterfiles.File{Path: c.DB.BoltPath(basedir), What: "the master's store", Suffixed: true})
	}
	for _, f := range c.Included {
		files = append(files, masterfiles.File{Path: abs(f), What: "an included config file", Suffixed: true})
	}
	for _, p := range c.IncludePatterns {
		files = append(files, masterfiles.File{Path: abs(p), What: "a file an include pattern reads", Pattern: true})
	}
	for i, cs := range c.ChangeSources {
		if cs.Type == "git_poller" {
			files = append(files, masterfiles.File{Path: cs.WorkdirPath(basedir), Dir: true,
				What: fmt.Sprintf("the mirror of change_source[%d] %q", i, cs.Name)})
		}
	}
	for i, sp := range c.SecretsProviders {
		if sp.Dirname != "" {
			files = append(files, masterfiles.File{Path: abs(sp.Dirname), Dir: true,
				What: fmt.Sprintf("the secrets directory of secrets_providers[%d]", i)})
		}
	}
	for _, f := range c.KeyFiles {
		f.Path = abs(f.Path)
		files = append(files, f)
	}
	return files
}

// keyFile records a file the config read, as one of the master's own files.
func (d *decoder) keyFile(t *table, key, path string) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(d.dir, path)
	}
	d.keyFiles = append(d.keyFiles, masterfiles.File{Path: path, What: "the " + t.path.key(key).String() + " file"})
}

// masterPathRef is a transfer step's master path, checked once the whole
// config (and so every master file) is known.
type masterPathRef struct {
	at    keyPath
	step  string
	path  string
	write bool
}

// checkMasterPaths refuses the transfer steps whose literal masterdest or
// mastersrc names one of the master's own files (see MasterFiles), through
// its symlinks as they are now; rendered paths are checked when the step
// runs.
func (d *decoder) checkMasterPaths(c *Config) {
	if len(d.masterPaths) == 0 {
		return
	}
	basedir := d.dir
	root, err := os.OpenRoot(basedir)
	if err != nil {
		return // no basedir to check against; the step checks again when it runs
	}
	defer root.Close()
	cfg := *c
	cfg.File = d.file
	cfg.KeyFiles = d.keyFiles
	cfg.Included = d.x.includedFiles()
	cfg.IncludePatterns = d.x.patterns
	g := masterfiles.New(basedir, cfg.MasterFiles(basedir))
	for _, ref := range d.masterPaths {
		t, err := interpolate.Parse(ref.path)
		if err != nil || !t.IsConstant() {
			continue
		}
		p, _, _ := t.Render(interpolate.Context{})
		// A path leading out of the basedir through a symlink is the
		// running step's to refuse: the link may change before it runs.
		if err := g.Check(root, p, ref.write); errors.Is(err, masterfiles.ErrMasterFile) {
			d.errorAt(ref.at, ref.at, "step %q: %v", ref.step, strings.TrimSuffix(err.Error(), ": "+masterfiles.ErrMasterFile.Error())+
				": transfers may not touch the master's own files")
		}
	}
}
