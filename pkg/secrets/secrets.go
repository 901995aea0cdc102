package secrets

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is returned by Get and Chain.Get when no provider has the
// secret.
var ErrNotFound = errors.New("secrets: no such secret")

// Provider is one source of secrets.
type Provider interface {
	// Get returns the value of the secret name; ErrNotFound (wrapped)
	// when the provider has no such secret.
	Get(name string) (string, error)
}

// Chain asks its providers in order; the first that has a secret gives its
// value, as buildbot's SecretManager.
type Chain []Provider

// Get returns the value of name from the first provider that has it.
func (c Chain) Get(name string) (string, error) {
	for _, p := range c {
		v, err := p.Get(name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		return v, err
	}
	return "", fmt.Errorf("%w %q", ErrNotFound, name)
}

// File reads each secret from its own file in a directory, as buildbot's
// SecretInAFile: the file's name is the secret's name, its content (less a
// trailing newline) the value. Neither the directory nor a file may be
// readable or writable by group or others.
type File struct {
	dir string
}

// tooOpen is the permission bits a secrets directory or file may not have:
// read or write for group and others.
const tooOpen fs.FileMode = 0o066

// NewFile returns the provider of the secrets in dir, after checking that
// dir is a directory closed to group and others.
func NewFile(dir string) (*File, error) {
	if err := CheckDir(dir); err != nil {
		return nil, err
	}
	return &File{dir: dir}, nil
}

// CheckDir checks that dir is a directory that neither group nor others may
// read or write: what NewFile requires.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("secrets directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("secrets directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&tooOpen != 0 {
		return fmt.Errorf("secrets directory %s: permissions %04o are too open: group and others may not read or write it (chmod 700)", dir, perm)
	}
	return nil
}

// Get reads the secret name from its file. A name that is not a plain file
// name is not found.
func (f *File) Get(name string) (string, error) {
	if name == "" || !filepath.IsLocal(name) || strings.ContainsRune(name, filepath.Separator) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("%w %q", ErrNotFound, name)
	}
	path := filepath.Join(f.dir, name)
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w %q", ErrNotFound, name)
	}
	if err != nil {
		return "", fmt.Errorf("read secret %q: %w", name, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return "", fmt.Errorf("read secret %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("read secret %q: %s is not a regular file", name, path)
	}
	if perm := fi.Mode().Perm(); perm&tooOpen != 0 {
		return "", fmt.Errorf("read secret %q: permissions %04o on %s are too open: group and others may not read or write it (chmod 600)", name, perm, path)
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return "", fmt.Errorf("read secret %q: %w", name, err)
	}
	v := strings.TrimSuffix(string(data), "\n")
	return strings.TrimSuffix(v, "\r"), nil
}

// Env reads secrets from the environment: the secret NAME is the variable
// Prefix+NAME.
type Env struct {
	Prefix string
	// Lookup is os.LookupEnv when nil.
	Lookup func(string) (string, bool)
}

// Get returns the value of the variable Prefix+name.
func (e Env) Get(name string) (string, error) {
	lookup := e.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(e.Prefix + name)
	if !ok || name == "" {
		return "", fmt.Errorf("%w %q", ErrNotFound, name)
	}
	return v, nil
}
