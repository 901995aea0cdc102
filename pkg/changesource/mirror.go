package changesource

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// mirror is the poller's bare repository, into which it fetches.
type mirror struct {
	repo *git.Repository
	// aside is the damaged mirror this one replaces, while it is being
	// made: what it still holds of the history seen before lets the walk
	// tell old commits from new ones that the remote no longer has (a
	// force-push while the mirror was damaged). Nil otherwise.
	aside *git.Repository
}

// objects is where the walk reads commits: the mirror, then what it lacks
// from the damaged mirror set aside, if any.
func (m *mirror) objects() storer.EncodedObjectStorer {
	if m.aside == nil {
		return m.repo.Storer
	}
	return withAside{m.repo.Storer, m.aside.Storer}
}

// withAside reads objects from a new mirror, and those it lacks from the
// damaged one set aside, as far as that one can still read them. It is
// only read from.
type withAside struct {
	storer.EncodedObjectStorer
	aside storer.EncodedObjectStorer
}

func (s withAside) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	obj, err := s.EncodedObjectStorer.EncodedObject(t, h)
	if !errors.Is(err, plumbing.ErrObjectNotFound) {
		return obj, err
	}
	if obj, aerr := s.aside.EncodedObject(t, h); aerr == nil {
		return obj, nil
	}
	return nil, err
}

// openMirror opens the bare repository in dir, making it if missing.
func openMirror(dir string) (*mirror, error) {
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		// go-git takes a repository without a HEAD for none; do not make
		// one over what is left of an old one, or over someone's files.
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("open mirror %s: not empty, and not a git repository (no HEAD)", dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("make mirror: %w", err)
		}
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	// go-git reads the config and HEAD only when it needs them: read them
	// now, so that garbage in either is found as damage, not ignored.
	if _, err := repo.Config(); err != nil {
		return nil, fmt.Errorf("open mirror %s: config: %w", dir, err)
	}
	if err := checkHead(repo); err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	return &mirror{repo: repo}, nil
}

// mirrorEntries are the names a bare repository holds at its top.
var mirrorEntries = []string{
	"HEAD", "config", "description", "objects", "refs", "packed-refs",
	"hooks", "info", "logs", "shallow", "index", "FETCH_HEAD", "ORIG_HEAD", "branches",
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

// checkHead checks that the mirror's HEAD names a ref or a commit.
func checkHead(repo *git.Repository) error {
	head, err := repo.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return fmt.Errorf("HEAD: %w", err)
	}
	switch {
	case head.Type() == plumbing.SymbolicReference && strings.HasPrefix(head.Target().String(), "refs/"):
	case head.Type() == plumbing.HashReference && !head.Hash().IsZero():
	default:
		return fmt.Errorf("HEAD: %q names neither a ref nor a commit", head.Strings()[1])
	}
	return nil
}

// checkMirror reports what is damaged in the mirror in dir, or nil if it
// opens, every ref in it names a readable commit (with its tree and
// parents), and each revision of tips (the last ones the poller saw) is a
// readable commit. It reads a few objects per ref, not the whole history.
func checkMirror(dir string, tips map[string]string) error {
	m, err := openMirror(dir)
	if err != nil {
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
			return fmt.Errorf("ref %s: names no object", ref.Name())
		}
		h, err := peel(m.repo, ref.Hash())
		if err != nil {
			return fmt.Errorf("ref %s: %w", ref.Name(), err)
		}
		if err := checkCommit(m.repo, h); err != nil {
			return fmt.Errorf("ref %s: %w", ref.Name(), err)
		}
	}
	for _, branch := range slices.Sorted(maps.Keys(tips)) {
		if err := checkCommit(m.repo, plumbing.NewHash(tips[branch])); err != nil {
			return fmt.Errorf("last seen tip of %s: %w", branch, err)
		}
	}
	return nil
}

// checkCommit reads commit h, its tree and its parents.
func checkCommit(r *git.Repository, h plumbing.Hash) error {
	c, err := r.CommitObject(h)
	if err != nil {
		return fmt.Errorf("commit %s: %w", h, err)
	}
	if _, err := c.Tree(); err != nil {
		return fmt.Errorf("tree of %s: %w", h, err)
	}
	for _, ph := range c.ParentHashes {
		if _, err := r.CommitObject(ph); err != nil {
			return fmt.Errorf("parent %s of %s: %w", ph, h, err)
		}
	}
	return nil
}

// remoteError is a failure that lies with the remote (or the way to it),
// not with the mirror: listing its refs, opening a local one. It never
// leads to checking the mirror, so a flaky remote costs no clone.
type remoteError struct{ err error }

func (e remoteError) Error() string { return e.err.Error() }
func (e remoteError) Unwrap() error { return e.err }

// remoteRefs are the refs a remote advertises.
type remoteRefs struct {
	refs map[plumbing.ReferenceName]plumbing.Hash // branches and tags
	head plumbing.ReferenceName                   // the branch HEAD names; "" if unknown
}

// fetch lists the remote's refs, fetches those the poller follows into the
// mirror, and returns the commit each one points at, by branch name as
// changes carry it ("main", or "refs/tags/v1" for a tag).
func (p *GitPoller) fetch(ctx context.Context, m *mirror) (map[string]plumbing.Hash, error) {
	ep, err := transport.NewEndpoint(p.cfg.RepoURL)
	if err != nil {
		return nil, remoteError{fmt.Errorf("parse repourl: %w", err)}
	}
	local := ep.Protocol == "file"
	var (
		rr   remoteRefs
		src  *git.Repository
		rem  *git.Remote
		auth transport.AuthMethod
	)
	if local {
		// go-git's file transport runs git-upload-pack; read the repository
		// directly instead, so that no git binary is needed.
		if src, err = git.PlainOpen(ep.Path); err != nil {
			return nil, remoteError{fmt.Errorf("open %s: %w", ep.Path, err)}
		}
		if rr, err = localRefs(src); err != nil {
			return nil, remoteError{fmt.Errorf("list refs: %w", err)}
		}
	} else {
		if auth, err = p.auth(ep); err != nil {
			return nil, remoteError{err}
		}
		rem = git.NewRemote(m.repo.Storer, &gitconfig.RemoteConfig{Name: "origin", URLs: []string{p.cfg.RepoURL}})
		if rr, err = listRemote(ctx, rem, auth); err != nil {
			return nil, remoteError{fmt.Errorf("list refs: %w", err)}
		}
	}

	selected := p.selectRefs(rr) // branch → ref
	if len(selected) == 0 {
		p.log.Debug("no ref to follow on the remote")
		return map[string]plumbing.Hash{}, nil
	}
	names := make([]plumbing.ReferenceName, 0, len(selected))
	for _, ref := range selected {
		names = append(names, ref)
	}
	slices.Sort(names)
	if local {
		err = copyRefs(ctx, src, m.repo, rr.refs, names)
	} else {
		specs := make([]gitconfig.RefSpec, len(names))
		for i, n := range names {
			specs[i] = gitconfig.RefSpec("+" + n + ":" + n)
		}
		err = rem.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Auth: auth, Tags: git.NoTags, Force: true})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}

	tips := make(map[string]plumbing.Hash, len(selected))
	for branch, ref := range selected {
		h, err := peel(m.repo, rr.refs[ref])
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			// Just fetched, or known to the mirror: it must be there.
			return nil, fmt.Errorf("ref %s: %w", ref, err)
		}
		if err != nil {
			p.log.Warn("ignoring a ref that names no commit", "ref", ref, "err", err)
			continue
		}
		tips[branch] = h
	}
	return tips, nil
}

// selectRefs returns the refs the poller follows, by branch name.
func (p *GitPoller) selectRefs(rr remoteRefs) map[string]plumbing.ReferenceName {
	out := map[string]plumbing.ReferenceName{}
	re := p.cfg.BranchRegex
	for name := range rr.refs {
		short, isBranch := strings.CutPrefix(name.String(), "refs/heads/")
		switch {
		case p.cfg.OnlyTags:
			if tag, ok := strings.CutPrefix(name.String(), "refs/tags/"); ok && (re == nil || re.MatchString(tag)) {
				out[name.String()] = name
			}
		case !isBranch:
		case p.cfg.AllBranches || re != nil:
			if re == nil || re.MatchString(short) {
				out[short] = name
			}
		case len(p.cfg.Branches) > 0:
			if slices.Contains(p.cfg.Branches, short) || slices.Contains(p.cfg.Branches, name.String()) {
				out[short] = name
			}
		case name == rr.head:
			out[short] = name
		}
	}
	return out
}

func (p *GitPoller) auth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	if p.cfg.SSHKeyFile == "" || ep.Protocol != "ssh" {
		return nil, nil
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	auth, err := gitssh.NewPublicKeysFromFile(user, p.cfg.SSHKeyFile, "")
	if err != nil {
		return nil, fmt.Errorf("read ssh key %s: %w", p.cfg.SSHKeyFile, err)
	}
	return auth, nil
}

// listRemote lists the branches and tags of a remote repository.
func listRemote(ctx context.Context, rem *git.Remote, auth transport.AuthMethod) (remoteRefs, error) {
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: auth})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return remoteRefs{refs: map[plumbing.ReferenceName]plumbing.Hash{}}, nil
	}
	if err != nil {
		return remoteRefs{}, err
	}
	rr := remoteRefs{refs: map[plumbing.ReferenceName]plumbing.Hash{}}
	var head *plumbing.Reference
	for _, ref := range refs {
		switch {
		case ref.Name() == plumbing.HEAD:
			head = ref
		case ref.Type() == plumbing.HashReference && (ref.Name().IsBranch() || ref.Name().IsTag()):
			rr.refs[ref.Name()] = ref.Hash()
		}
	}
	rr.head = headBranch(head, rr.refs)
	return rr, nil
}

// localRefs lists the branches and tags of a repository on this machine.
func localRefs(src *git.Repository) (remoteRefs, error) {
	rr := remoteRefs{refs: map[plumbing.ReferenceName]plumbing.Hash{}}
	iter, err := src.References()
	if err != nil {
		return rr, err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference && (ref.Name().IsBranch() || ref.Name().IsTag()) {
			rr.refs[ref.Name()] = ref.Hash()
		}
		return nil
	})
	if err != nil {
		return rr, err
	}
	head, err := src.Storer.Reference(plumbing.HEAD)
	if err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		return rr, err
	}
	rr.head = headBranch(head, rr.refs)
	return rr, nil
}

// headBranch returns the branch HEAD names: its target when it is
// symbolic, else a branch at the same commit (main or master first).
func headBranch(head *plumbing.Reference, refs map[plumbing.ReferenceName]plumbing.Hash) plumbing.ReferenceName {
	if head == nil {
		return ""
	}
	if head.Type() == plumbing.SymbolicReference {
		return head.Target()
	}
	var same []plumbing.ReferenceName
	for name, h := range refs {
		if name.IsBranch() && h == head.Hash() {
			same = append(same, name)
		}
	}
	slices.SortFunc(same, func(a, b plumbing.ReferenceName) int {
		rank := func(n plumbing.ReferenceName) int {
			switch n {
			case "refs/heads/main":
				return 0
			case "refs/heads/master":
				return 1
			}
			return 2
		}
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(string(a), string(b))
	})
	if len(same) == 0 {
		return ""
	}
	return same[0]
}

// copyRefs copies the objects of refs names of src that dst lacks into dst,
// then points dst's refs at them, so dst holds them as after a fetch.
func copyRefs(ctx context.Context, src, dst *git.Repository, refs map[plumbing.ReferenceName]plumbing.Hash, names []plumbing.ReferenceName) error {
	var wants, have []plumbing.Hash
	for _, n := range names {
		wants = append(wants, refs[n])
	}
	iter, err := dst.References()
	if err != nil {
		return err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference {
			have = append(have, ref.Hash())
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Every object of dst is there with all it refers to, since refs are
	// set only once their objects are copied.
	missing, err := revlist.ObjectsWithStorageForIgnores(src.Storer, dst.Storer, wants, have)
	if err != nil {
		return err
	}
	for _, h := range missing {
		if err := ctx.Err(); err != nil {
			return err
		}
		if dst.Storer.HasEncodedObject(h) == nil {
			continue
		}
		obj, err := src.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return err
		}
		if _, err := dst.Storer.SetEncodedObject(obj); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := dst.Storer.SetReference(plumbing.NewHashReference(n, refs[n])); err != nil {
			return err
		}
	}
	return nil
}

// peel returns the commit h names, through annotated tags.
func peel(r *git.Repository, h plumbing.Hash) (plumbing.Hash, error) {
	for range 16 {
		obj, err := r.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return h, err
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return h, nil
		case plumbing.TagObject:
			tag, err := object.DecodeTag(r.Storer, obj)
			if err != nil {
				return h, err
			}
			h = tag.Target
		default:
			return h, fmt.Errorf("%s is a %s", h, obj.Type())
		}
	}
	return h, fmt.Errorf("%s: tags nested too deep", h)
}
