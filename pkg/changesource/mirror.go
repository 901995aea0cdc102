package changesource

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Memory bounds of a mirror's storage: go-git's default object cache holds
// up to 96 MiB of objects per repository, and reads a blob of any size
// whole. The poller reads commits and trees, each once, and never a blob.
const (
	objectCacheSize      = 4 * cache.MiByte
	largeObjectThreshold = 1 * cache.MiByte
)

// mirror is the poller's bare repository, into which it fetches.
type mirror struct {
	repo *git.Repository
	// aside is the damaged mirror this one replaces, while it is being
	// made: what it still holds of the history seen before lets the walk
	// tell old commits from new ones that the remote no longer has (a
	// force-push while the mirror was damaged). Nil otherwise. Only the
	// walk reads it, never the fetch, so that the new mirror holds every
	// object it needs.
	aside *git.Repository
	// received says that a fetch brought a pack into the mirror.
	received bool
}

// objects is where the walk reads commits: the mirror, then (withAside)
// what it lacks from the damaged mirror set aside, if any.
func (m *mirror) objects(withAside bool) storer.EncodedObjectStorer {
	if m.aside == nil || !withAside {
		return m.repo.Storer
	}
	return asideObjects{m.repo.Storer, m.aside.Storer}
}

// asideObjects reads objects from a new mirror, and those it lacks from
// the damaged one set aside, as far as that one can still read them. It is
// only read from.
type asideObjects struct {
	storer.EncodedObjectStorer
	aside storer.EncodedObjectStorer
}

func (s asideObjects) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	obj, err := s.EncodedObjectStorer.EncodedObject(t, h)
	if !errors.Is(err, plumbing.ErrObjectNotFound) {
		return obj, err
	}
	if obj, aerr := s.aside.EncodedObject(t, h); aerr == nil {
		return obj, nil
	}
	return nil, err
}

// openRepo opens the repository in dir with the poller's memory bounds;
// init makes it first.
func openRepo(dir string, init bool) (*git.Repository, error) {
	st := filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRU(objectCacheSize),
		filesystem.Options{LargeObjectThreshold: int64(largeObjectThreshold)})
	if init {
		return git.Init(st, nil)
	}
	return git.Open(st, nil)
}

// openMirror opens the bare repository in dir, making it if dir is missing
// or empty. It checks HEAD and the config itself: go-git takes a directory
// with a bad HEAD for no repository at all, and reads the config only when
// it needs it, so that garbage in either would be ignored, not found as
// damage.
func openMirror(dir string) (*mirror, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("make mirror: %w", err)
		}
		repo, err := openRepo(dir, true)
		if err != nil {
			return nil, fmt.Errorf("make mirror: %w", err)
		}
		return &mirror{repo: repo}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	if err := checkHead(dir); err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	repo, err := openRepo(dir, false)
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	if _, err := repo.Config(); err != nil {
		return nil, fmt.Errorf("open mirror %s: config: %w", dir, err)
	}
	return &mirror{repo: repo}, nil
}

// checkHead checks that the mirror's HEAD names a ref or a commit.
func checkHead(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "HEAD"))
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("not empty, and not a git repository (no HEAD)")
	}
	if err != nil {
		return fmt.Errorf("HEAD: %w", err)
	}
	head := strings.TrimSpace(string(b))
	if target, ok := strings.CutPrefix(head, "ref: "); ok && strings.HasPrefix(target, "refs/") && !strings.ContainsAny(target, " \x00") {
		return nil
	}
	if isHash(head) {
		return nil
	}
	return fmt.Errorf("HEAD: %q names neither a ref nor a commit", head)
}

// isHash reports whether s is a full object name (SHA-1 or SHA-256).
func isHash(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// mirrorEntries are the names a bare repository holds at its top.
var mirrorEntries = []string{
	"HEAD", "config", "description", "objects", "refs", "packed-refs",
	"hooks", "info", "logs", "shallow", "index", "FETCH_HEAD", "ORIG_HEAD", "branches",
	"gc.log", "gc.pid",
}

// looksLikeMirror reports an error unless every entry of dir is one a bare
// repository holds (or a temporary or lock file of one): the poller sets
// aside and removes only a directory that is a damaged mirror, never one
// with someone's files in it (a workdir set to the master's basedir).
func looksLikeMirror(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		ok := strings.HasPrefix(name, ".") || strings.HasPrefix(name, "tmp")
		for _, known := range mirrorEntries {
			ok = ok || name == known || strings.HasPrefix(name, known+".")
		}
		if !ok {
			return fmt.Errorf("%s holds %s, which no git mirror holds: not removing it", dir, name)
		}
	}
	return nil
}

// checkMirror reports what is damaged in the mirror in dir, or nil if its
// HEAD and config read, every ref in it names a readable object (through
// tags: a readable commit, with its tree and parents), and each revision of
// tips (the last ones the poller saw) is such a commit. It reads a few
// objects per ref, not the whole history.
func checkMirror(dir string, tips map[string]string) error {
	m, err := openMirror(dir)
	if err != nil {
		return err
	}
	// go-git stops listing refs at the first it cannot read, without
	// naming it: read the loose ones one by one first.
	refsDir := filepath.Join(dir, "refs")
	err = filepath.WalkDir(refsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".lock") {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		name := plumbing.ReferenceName(filepath.ToSlash(rel))
		if _, err := m.repo.Storer.Reference(name); err != nil {
			return fmt.Errorf("broken ref %s: %w", name, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	iter, err := m.repo.Storer.IterReferences()
	if err != nil {
		return fmt.Errorf("list refs: %w", err)
	}
	var refs []*plumbing.Reference
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		refs = append(refs, ref)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list refs: %w", err)
	}
	for _, ref := range refs {
		if ref.Type() != plumbing.HashReference || ref.Name() == plumbing.HEAD {
			continue
		}
		if ref.Hash().IsZero() {
			return fmt.Errorf("broken ref %s: names no object", ref.Name())
		}
		h, err := peel(m.repo.Storer, ref.Hash())
		if errors.As(err, new(notCommitError)) {
			continue // a tag of a tree or a blob, as fetched
		}
		if err != nil {
			return fmt.Errorf("ref %s: %w", ref.Name(), err)
		}
		if err := checkCommit(m.repo.Storer, h); err != nil {
			return fmt.Errorf("ref %s: %w", ref.Name(), err)
		}
	}
	for _, branch := range slices.Sorted(maps.Keys(tips)) {
		if err := checkCommit(m.repo.Storer, plumbing.NewHash(tips[branch])); err != nil {
			return fmt.Errorf("last seen tip of %s: %w", branch, err)
		}
	}
	return nil
}

// checkCommit reads commit h, its tree and its parents.
func checkCommit(s storer.EncodedObjectStorer, h plumbing.Hash) error {
	c, err := object.GetCommit(s, h)
	if err != nil {
		return fmt.Errorf("commit %s: %w", h, err)
	}
	if _, err := c.Tree(); err != nil {
		return fmt.Errorf("tree of %s: %w", h, err)
	}
	for _, ph := range c.ParentHashes {
		if _, err := object.GetCommit(s, ph); err != nil {
			return fmt.Errorf("parent %s of %s: %w", ph, h, err)
		}
	}
	return nil
}

// notCommitError is a ref that names (through tags) an object other than a
// commit.
type notCommitError struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
}

func (e notCommitError) Error() string { return fmt.Sprintf("%s is a %s, not a commit", e.hash, e.typ) }

// peel returns the commit h names, through annotated tags.
func peel(s storer.EncodedObjectStorer, h plumbing.Hash) (plumbing.Hash, error) {
	for range 16 {
		obj, err := s.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return h, fmt.Errorf("object %s: %w", h, err)
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return h, nil
		case plumbing.TagObject:
			tag, err := object.DecodeTag(s, obj)
			if err != nil {
				return h, fmt.Errorf("tag %s: %w", h, err)
			}
			h = tag.Target
		default:
			return h, notCommitError{h, obj.Type()}
		}
	}
	return h, fmt.Errorf("%s: tags nested too deep", h)
}
