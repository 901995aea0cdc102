package worker

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// updateSubmodules inits the submodules of repo and checks out the commits
// its index records, then does the same in each of them, as git submodule
// update --init --recursive does. A submodule on this machine is read
// directly, as fetchLocal reads the main repository; others are fetched by
// go-git with the command's credentials.
func (r *gitRun) updateSubmodules(repo *git.Repository) error {
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	subs, err := wt.Submodules()
	if err != nil {
		return fmt.Errorf("read .gitmodules: %w", err)
	}
	for _, s := range subs {
		path := s.Config().Path
		if err := s.Init(); err != nil && !errors.Is(err, git.ErrSubmoduleAlreadyInitialized) {
			return fmt.Errorf("init submodule %s: %w", path, err)
		}
		st, err := s.Status()
		if err != nil {
			return fmt.Errorf("submodule %s: %w", path, err)
		}
		sub, err := s.Repository()
		if err != nil {
			return fmt.Errorf("submodule %s: %w", path, err)
		}
		rem, err := sub.Remote("origin")
		if err != nil {
			return fmt.Errorf("submodule %s: %w", path, err)
		}
		url := rem.Config().URLs[0]
		ep, err := transport.NewEndpoint(url)
		if err != nil {
			return fmt.Errorf("submodule %s: url %q: %w", path, url, err)
		}
		r.header("submodule %s: %s at %s", path, url, st.Expected)
		opts := &git.SubmoduleUpdateOptions{RecurseSubmodules: git.NoRecurseSubmodules, Depth: r.g.Depth}
		if ep.Protocol == "file" {
			src, err := git.PlainOpen(ep.Path)
			if err == nil {
				err = r.copyObjects(src, sub, []plumbing.Hash{st.Expected})
			}
			if err != nil {
				return fmt.Errorf("fetch submodule %s from %s: %w", path, url, err)
			}
			opts.NoFetch = true
		} else if opts.Auth, err = r.auth(ep); err != nil {
			return err
		}
		if err := s.UpdateContext(r.ctx, opts); err != nil {
			return fmt.Errorf("update submodule %s from %s to %s: %w", path, url, st.Expected, err)
		}
		if err := r.updateSubmodules(sub); err != nil {
			return fmt.Errorf("in submodule %s: %w", path, err)
		}
	}
	return nil
}

// cleanSubmodules runs cleanTree in each checked-out submodule of repo
// (checked out in dir), recursively.
func (r *gitRun) cleanSubmodules(repo *git.Repository, dir string, ignored bool) error {
	paths, err := submodulePaths(repo)
	if err != nil {
		return err
	}
	for _, p := range paths {
		sdir := filepath.Join(dir, filepath.FromSlash(p))
		sub, err := git.PlainOpen(sdir)
		if errors.Is(err, git.ErrRepositoryNotExists) {
			continue // not initialized
		}
		if err == nil {
			err = cleanTree(r.ctx, sub, sdir, ignored)
		}
		if err == nil {
			err = r.cleanSubmodules(sub, sdir, ignored)
		}
		if err != nil {
			return fmt.Errorf("clean submodule %s: %w", p, err)
		}
	}
	return nil
}
