package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// Dump returns the config file at path expanded, as TOML: its include
// files merged, its factories' steps written into the builders that use
// them and its matrices expanded into one builder per combination. The
// result is what the master runs: it loads (from the same directory, as
// relative paths stay relative) to the same Config as path.
//
// Values are written as in the source files, passwords too: the dump is
// the user's own config, readable only by who could read its files, and a
// dump that hid them would not load to the same Config. A password kept in
// a password_file stays a file name. The error is Load's when path does
// not load.
func Dump(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	if _, err := Parse(path, data); err != nil {
		return nil, err
	}
	x, err := expand(path, data)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s expanded by gbb-master checkconfig --dump", filepath.Base(path))
	for _, f := range x.includedFiles() {
		fmt.Fprintf(&b, "\n#   included: %s", f)
	}
	b.WriteString("\n# (includes merged, factories and matrices expanded; keys sorted)")
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		dir = filepath.Dir(path)
	}
	// The dump's relative paths (password_file, a secrets dirname, a
	// transfer's masterdest...) are those of the config: they name files
	// of its directory only when the dump is loaded from there.
	fmt.Fprintf(&b, "\n# relative paths in it are relative to %s: load it from that directory\n\n", dir)
	enc := toml.NewEncoder(&b)
	enc.Indent = "  "
	if err := enc.Encode(x.raw); err != nil {
		return nil, fmt.Errorf("dump config: %w", err)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}
