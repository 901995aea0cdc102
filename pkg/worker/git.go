package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// gitFatal is the exit code of a git command that failed, as git's own
// "fatal:" errors exit.
const gitFatal = 128

// gitSourceDir is where method copy keeps its incremental checkout, in
// BASEDIR/<builder>/, as buildbot's srcdir.
const gitSourceDir = "source"

// gitRun is one git command being run: its output and its repository.
type gitRun struct {
	ctx    context.Context
	g      *protocol.GitCommand
	out    func(protocol.Output)
	dir    string // the checkout being updated
	srcdir string // method copy's incremental checkout
	repo   *git.Repository
}

func (r *gitRun) header(format string, args ...any) {
	r.out(protocol.Output{Stream: protocol.Header, Data: fmt.Appendf(nil, format+"\n", args...)})
}

func (r *gitRun) stdout(format string, args ...any) {
	r.out(protocol.Output{Stream: protocol.Stdout, Data: fmt.Appendf(nil, format+"\n", args...)})
}

// runGit checks out g's revision in BASEDIR/<builder>/<workdir> with
// go-git, as buildbot's Git step does with the git binary. Failures are
// written to stderr and end with exit code 128; cancelling ctx interrupts
// the fetch.
func (e *Executor) runGit(ctx context.Context, builder string, g *protocol.GitCommand, out func(protocol.Output)) protocol.Result {
	r := &gitRun{ctx: ctx, g: g, out: out}
	dir, err := e.workdir(builder, g.Workdir)
	if err != nil {
		r.header("%v", err)
		return protocol.Result{ExitCode: -1, Err: err.Error()}
	}
	r.dir = dir
	if g.Method == protocol.GitCopy {
		if r.srcdir, err = e.workdir(builder, gitSourceDir); err == nil {
			err = checkCopyDirs(r.srcdir, dir)
		}
		if err != nil {
			r.header("%v", err)
			return protocol.Result{ExitCode: -1, Err: err.Error()}
		}
	}
	rev, err := r.run()
	switch {
	case err != nil && ctx.Err() != nil:
		r.header("command interrupted")
		return protocol.Result{ExitCode: -1, Interrupted: true}
	case err != nil:
		r.out(protocol.Output{Stream: protocol.Stderr, Data: []byte("fatal: " + err.Error() + "\n")})
		return protocol.Result{ExitCode: gitFatal}
	}
	return protocol.Result{GotRevision: rev.String()}
}

// checkCopyDirs refuses a workdir that method copy's removal would take
// the source checkout with, or that would be copied into itself.
func checkCopyDirs(srcdir, dir string) error {
	for _, pair := range [][2]string{{srcdir, dir}, {dir, srcdir}} {
		if rel, err := filepath.Rel(pair[0], pair[1]); err == nil && filepath.IsLocal(rel) || pair[0] == pair[1] {
			return fmt.Errorf("method copy: workdir %s and its source checkout %s overlap", dir, srcdir)
		}
	}
	return nil
}

// run does the work of runGit and returns the commit checked out.
func (r *gitRun) run() (plumbing.Hash, error) {
	g := r.g
	mode, method := g.Mode, g.Method
	if mode == "" {
		mode = protocol.GitIncremental
	}
	if mode == protocol.GitFull && method == "" {
		method = protocol.GitClobber
	}
	if method != "" {
		r.header("mode %s, method %s, in dir %s", mode, method, r.dir)
	} else {
		r.header("mode %s in dir %s", mode, r.dir)
	}
	if method != protocol.GitCopy {
		return r.update(mode, method)
	}

	// Copy, as buildbot's: remove the workdir, update the source checkout
	// incrementally, copy it to the workdir.
	work := r.dir
	r.header("rm -rf %s", work)
	if err := os.RemoveAll(work); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("copy: %w", err)
	}
	r.dir = r.srcdir
	r.header("mode %s in dir %s", protocol.GitIncremental, r.dir)
	rev, err := r.update(protocol.GitIncremental, "")
	if err != nil {
		return plumbing.ZeroHash, err
	}
	r.header("cp -a %s %s", r.srcdir, work)
	if err := copyTree(r.ctx, r.srcdir, work); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("copy %s to %s: %w", r.srcdir, work, err)
	}
	return rev, nil
}

// update brings the checkout in r.dir to the command's revision by mode
// and method (not copy) and returns the commit checked out.
func (r *gitRun) update(mode, method string) (plumbing.Hash, error) {
	g := r.g
	if method == protocol.GitClobber {
		r.header("rm -rf %s", r.dir)
		if err := os.RemoveAll(r.dir); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("clobber: %w", err)
		}
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("clobber: %w", err)
		}
	}
	repo, err := git.PlainOpen(r.dir)
	fresh := errors.Is(err, git.ErrRepositoryNotExists)
	if fresh {
		r.header("git clone %s .", g.RepoURL)
		repo, err = git.PlainInit(r.dir, false)
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("open repository in %s: %w", r.dir, err)
	}
	r.repo = repo
	if err := r.setOrigin(); err != nil {
		return plumbing.ZeroHash, err
	}

	branch, err := r.fetch()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	target, err := r.target(branch)
	if err != nil {
		return plumbing.ZeroHash, err
	}

	// The branch is at target and HEAD names it (git checkout -B branch);
	// the reset then makes the index and the files match.
	local := plumbing.NewBranchReferenceName(branch)
	for _, ref := range []*plumbing.Reference{
		plumbing.NewHashReference(local, target),
		plumbing.NewSymbolicReference(plumbing.HEAD, local),
	} {
		if err := repo.Storer.SetReference(ref); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("set %s: %w", ref.Name(), err)
		}
	}
	r.header("git reset --hard %s --", target)
	// Only a new clone may let go-git remove untracked files: an update
	// keeps them, and clean and fresh then remove what their flags say.
	if err := r.reset(target, !fresh); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reset to %s: %w", target, err)
	}
	if g.Submodules {
		r.header("git submodule update --init --recursive")
		if err := r.updateSubmodules(repo); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	if method == protocol.GitFresh || method == protocol.GitClean {
		x := method == protocol.GitFresh
		flags := "-f -f -d"
		if x {
			flags += " -x"
		}
		r.header("git clean %s", flags)
		if err := cleanTree(r.ctx, repo, r.dir, x); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("clean: %w", err)
		}
		if g.Submodules {
			r.header("git submodule foreach --recursive git clean %s", flags)
			if err := r.cleanSubmodules(repo, r.dir, x); err != nil {
				return plumbing.ZeroHash, err
			}
		}
	}
	if c, err := repo.CommitObject(target); err == nil {
		subject, _, _ := strings.Cut(c.Message, "\n")
		r.stdout("HEAD is now at %s %s", target.String()[:7], subject)
	}
	return target, nil
}

// setOrigin points the remote "origin" at the repourl, as a clone would.
func (r *gitRun) setOrigin() error {
	if rem, err := r.repo.Remote("origin"); err == nil {
		if urls := rem.Config().URLs; len(urls) == 1 && urls[0] == r.g.RepoURL {
			return nil
		}
		if err := r.repo.DeleteRemote("origin"); err != nil {
			return fmt.Errorf("update remote origin: %w", err)
		}
	}
	_, err := r.repo.CreateRemote(&gitconfig.RemoteConfig{
		Name:  "origin",
		URLs:  []string{r.g.RepoURL},
		Fetch: []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
	})
	if err != nil {
		return fmt.Errorf("set remote origin: %w", err)
	}
	return nil
}

// fetch brings the branch (the remote's default branch when the command
// names none) into refs/remotes/origin/<branch>, with the command's
// revision when it is elsewhere in a local source, and returns the
// branch's name.
func (r *gitRun) fetch() (string, error) {
	g := r.g
	ep, err := transport.NewEndpoint(g.RepoURL)
	if err != nil {
		return "", fmt.Errorf("repourl %q: %w", g.RepoURL, err)
	}
	if ep.Protocol == "file" {
		return r.fetchLocal(ep.Path)
	}

	auth, err := r.auth(ep)
	if err != nil {
		return "", err
	}
	rem, err := r.repo.Remote("origin")
	if err != nil {
		return "", err
	}
	refs, err := rem.ListContext(r.ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return "", fmt.Errorf("list refs of %s: %w", g.RepoURL, err)
	}
	tips := map[plumbing.ReferenceName]plumbing.Hash{}
	var head *plumbing.Reference
	for _, ref := range refs {
		switch {
		case ref.Name() == plumbing.HEAD:
			head = ref
		case ref.Type() == plumbing.HashReference && ref.Name().IsBranch():
			tips[ref.Name()] = ref.Hash()
		}
	}
	branch, err := pickBranch(g.Branch, head, tips, g.RepoURL)
	if err != nil {
		return "", err
	}
	r.header("git fetch -f %s %s%s", g.RepoURL, branch, depthFlag(g.Depth))
	spec := gitconfig.RefSpec("+refs/heads/" + branch + ":refs/remotes/origin/" + branch)
	err = rem.FetchContext(r.ctx, &git.FetchOptions{
		RefSpecs: []gitconfig.RefSpec{spec},
		Auth:     auth,
		Depth:    g.Depth,
		Tags:     git.NoTags,
		Force:    true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return "", fmt.Errorf("fetch %s from %s: %w", branch, g.RepoURL, err)
	}
	return branch, nil
}

// fetchLocal is fetch from a repository on this machine: go-git's file
// transport runs git-upload-pack, so the worker reads the repository
// directly and copies the objects it lacks (the whole history: a local
// source is never shallow).
func (r *gitRun) fetchLocal(path string) (string, error) {
	g := r.g
	src, err := git.PlainOpen(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", g.RepoURL, err)
	}
	tips := map[plumbing.ReferenceName]plumbing.Hash{}
	iter, err := src.Branches()
	if err != nil {
		return "", fmt.Errorf("list branches of %s: %w", g.RepoURL, err)
	}
	_ = iter.ForEach(func(ref *plumbing.Reference) error {
		tips[ref.Name()] = ref.Hash()
		return nil
	})
	head, err := src.Storer.Reference(plumbing.HEAD)
	if err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		return "", fmt.Errorf("read HEAD of %s: %w", g.RepoURL, err)
	}
	branch, err := pickBranch(g.Branch, head, tips, g.RepoURL)
	if err != nil {
		return "", err
	}
	r.header("git fetch -f %s %s", g.RepoURL, branch)
	if g.Depth > 0 {
		r.header("(a local repository is fetched whole: depth %d ignored)", g.Depth)
	}
	tip := tips[plumbing.NewBranchReferenceName(branch)]
	wants := []plumbing.Hash{tip}
	if g.Revision != "" {
		if h, err := src.ResolveRevision(plumbing.Revision(g.Revision)); err == nil && *h != tip {
			wants = append(wants, *h)
		}
	}
	if err := r.copyObjects(src, r.repo, wants); err != nil {
		return "", fmt.Errorf("fetch %s from %s: %w", branch, g.RepoURL, err)
	}
	ref := plumbing.NewHashReference(plumbing.NewRemoteReferenceName("origin", branch), tip)
	if err := r.repo.Storer.SetReference(ref); err != nil {
		return "", fmt.Errorf("fetch %s from %s: %w", branch, g.RepoURL, err)
	}
	return branch, nil
}

// copyObjects copies the objects of wants that dst lacks from src, as
// pkg/changesource's mirror does.
func (r *gitRun) copyObjects(src, dst *git.Repository, wants []plumbing.Hash) error {
	var have []plumbing.Hash
	iter, err := dst.References()
	if err != nil {
		return err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference && dst.Storer.HasEncodedObject(ref.Hash()) == nil {
			have = append(have, ref.Hash())
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Every ref's objects are there with all they refer to, since refs
	// are set only once their objects are copied.
	missing, err := revlist.ObjectsWithStorageForIgnores(src.Storer, dst.Storer, wants, have)
	if err != nil {
		return err
	}
	for _, h := range missing {
		if err := r.ctx.Err(); err != nil {
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
	return nil
}

// auth returns how to authenticate to ep: with the command's private key
// for an ssh URL when it names one; else nil, which is go-git's default
// (the ssh agent for ssh URLs). Host keys are checked against known_hosts,
// as go-git does by default.
func (r *gitRun) auth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	key := r.g.SSHPrivateKeyFile
	if key == "" || ep.Protocol != "ssh" {
		return nil, nil
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	auth, err := gitssh.NewPublicKeysFromFile(user, key, "")
	if err != nil {
		return nil, fmt.Errorf("ssh_private_key_file %s: %w", key, err)
	}
	return auth, nil
}

// pickBranch returns the branch to check out: want when set (it must
// exist), else the one the remote's HEAD names.
func pickBranch(want string, head *plumbing.Reference, tips map[plumbing.ReferenceName]plumbing.Hash, url string) (string, error) {
	if want != "" {
		want = strings.TrimPrefix(want, "refs/heads/")
		if _, ok := tips[plumbing.NewBranchReferenceName(want)]; !ok {
			return "", fmt.Errorf("branch %q not found in %s", want, url)
		}
		return want, nil
	}
	if len(tips) == 0 {
		return "", fmt.Errorf("%s has no branch (an empty repository?)", url)
	}
	if head != nil && head.Type() == plumbing.SymbolicReference {
		if _, ok := tips[head.Target()]; ok {
			return head.Target().Short(), nil
		}
	}
	if head != nil {
		for _, name := range []plumbing.ReferenceName{"refs/heads/main", "refs/heads/master"} {
			if tips[name] == head.Hash() {
				return name.Short(), nil
			}
		}
		for name, h := range tips {
			if h == head.Hash() {
				return name.Short(), nil
			}
		}
	}
	return "", fmt.Errorf("cannot tell the default branch of %s: name one with branch", url)
}

// target is the commit to check out: the command's revision, or the tip of
// the fetched branch.
func (r *gitRun) target(branch string) (plumbing.Hash, error) {
	if rev := r.g.Revision; rev != "" {
		h, err := r.repo.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("revision %s not found in %s (branch %s)", rev, r.g.RepoURL, branch)
		}
		if _, err := r.repo.CommitObject(*h); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("revision %s of %s is not a commit: %w", rev, r.g.RepoURL, err)
		}
		return *h, nil
	}
	ref, err := r.repo.Reference(plumbing.NewRemoteReferenceName("origin", branch), true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s was not fetched: %w", branch, err)
	}
	return ref.Hash(), nil
}

// reset checks out target as git reset --hard does. go-git's hard reset
// also removes untracked files, which an incremental update must keep (its
// build products): keep limits the reset to the paths tracked before or
// after it.
func (r *gitRun) reset(target plumbing.Hash, keep bool) error {
	wt, err := r.repo.Worktree()
	if err != nil {
		return err
	}
	opts := &git.ResetOptions{Commit: target, Mode: git.HardReset}
	if !keep {
		return wt.Reset(opts)
	}
	paths := map[string]bool{}
	idx, err := r.repo.Storer.Index()
	if err != nil {
		return err
	}
	for _, e := range idx.Entries {
		paths[e.Name] = true
	}
	c, err := r.repo.CommitObject(target)
	if err != nil {
		return err
	}
	files, err := c.Files()
	if err != nil {
		return err
	}
	err = files.ForEach(func(f *object.File) error {
		paths[f.Name] = true
		return nil
	})
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		// An empty list means every path to go-git.
		opts.Mode = git.MixedReset
	}
	for p := range paths {
		opts.Files = append(opts.Files, p)
	}
	return wt.Reset(opts)
}

func depthFlag(depth int) string {
	if depth > 0 {
		return fmt.Sprintf(" --depth %d", depth)
	}
	return ""
}
