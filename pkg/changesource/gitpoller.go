package changesource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gbb-ci/gbb/pkg/store"
)

// DefaultPollInterval is buildbot's GitPoller default.
const DefaultPollInterval = 10 * time.Minute

// DefaultPollTimeout bounds a poll whose GitPollerConfig.PollTimeout is
// zero.
const DefaultPollTimeout = 5 * time.Minute

// ErrPollTimeout is returned (wrapped) by Poll when the poll took longer
// than its PollTimeout and was cut short.
var ErrPollTimeout = errors.New("poll timed out")

// stateKey is where a poller keeps its last seen revisions, as buildbot's
// GitPoller: a JSON object from branch to revision.
const stateKey = "lastRev"

// Store is what a GitPoller needs of the store.
type Store interface {
	// GetState returns the value stored under key for objectName, and
	// whether there is one.
	GetState(objectName, key string) (json.RawMessage, bool, error)
	// AddChangesAndState stores changes and sets the state in one
	// transaction, and returns the changes as stored.
	AddChangesAndState(changes []store.Change, objectName, key string, value json.RawMessage) ([]store.Change, error)
}

// Secrets gives the value of a secret by name, as the master's secrets
// providers do.
type Secrets interface {
	Get(name string) (string, error)
}

// GitPollerConfig configures a GitPoller, as buildbot's GitPoller.
type GitPollerConfig struct {
	// Name identifies the poller's state in the store; it must be unique
	// among change sources. Empty means "GitPoller:" + RepoURL.
	Name string
	// RepoURL is the remote: https://..., ssh://... or user@host:path (with
	// SSHKeyFile), file://... or a local path.
	RepoURL string
	// Branches lists the branches to follow, by name ("main") or full ref
	// ("refs/heads/main"). Nil (and AllBranches false, BranchRegex nil)
	// means the remote's default branch only.
	Branches []string
	// AllBranches follows every branch of the remote.
	AllBranches bool
	// BranchRegex follows the branches whose name (without "refs/heads/")
	// it matches; with OnlyTags, the tags whose name it matches.
	BranchRegex *regexp.Regexp
	// PollInterval is the time between polls; zero means DefaultPollInterval.
	PollInterval time.Duration
	// PollTimeout bounds each poll, from listing the refs to storing the
	// changes: a remote that stalls (accepts and never answers, or stops
	// in the middle of a fetch) fails the poll with ErrPollTimeout, and Run
	// tries again at the next interval. Zero means DefaultPollTimeout. A
	// first fetch of a large repository over a slow link may need more.
	PollTimeout time.Duration
	// PollAtLaunch makes Run poll at once; by default its first poll is one
	// interval after it starts.
	PollAtLaunch bool
	// OnlyTags follows the remote's tags instead of its branches; a change
	// on a tag has branch "refs/tags/NAME", as in buildbot.
	OnlyTags bool
	// BuildPushesWithNoCommits announces the tip of a branch that moved
	// (or appeared) without any new commit, such as a branch made from
	// another one.
	BuildPushesWithNoCommits bool
	// Category, Project and Codebase are set on every change.
	Category, Project, Codebase string
	// RevLink is a template for a change's RevLink: each %s is replaced by
	// the revision. Empty means no link.
	RevLink string
	// Workdir is the bare mirror's directory, made if missing (usually under
	// the master's basedir). Required.
	Workdir string
	// SSHKeyFile is the private key for ssh URLs; empty means the keys of
	// the ssh agent (SSH_AUTH_SOCK).
	SSHKeyFile string
	// SSHKnownHostsFile lists the host keys an ssh remote may have, in
	// OpenSSH's known_hosts format; empty means SSH_KNOWN_HOSTS, else
	// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. A host whose key is
	// not listed is refused.
	SSHKnownHostsFile string
	// HTTPUsername and HTTPPasswordSecret are the credentials for http(s)
	// URLs: the password is the secret of that name, read from Secrets at
	// each poll. An empty username with a password means "git".
	HTTPUsername, HTTPPasswordSecret string
	// Secrets gives the values of secrets, for HTTPPasswordSecret.
	Secrets Secrets
}

// GitPoller polls one git remote and announces its new commits as changes.
// Its methods are safe for concurrent use; polls run one at a time.
type GitPoller struct {
	cfg    GitPollerConfig
	st     Store
	notify func([]store.Change)
	log    *slog.Logger

	mu sync.Mutex // held during a poll
}

// NewGitPoller returns a poller of cfg.RepoURL that keeps its state in st and
// calls notify (if not nil) with the changes of each poll that finds some,
// after they are committed to the store. A nil log means discard.
func NewGitPoller(cfg GitPollerConfig, st Store, notify func([]store.Change), log *slog.Logger) *GitPoller {
	if cfg.Name == "" {
		cfg.Name = "GitPoller:" + cfg.RepoURL
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	cfg.Branches = slices.Clone(cfg.Branches)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GitPoller{
		cfg:    cfg,
		st:     st,
		notify: notify,
		log:    log.With("changesource", cfg.Name),
	}
}

// Name returns the poller's name, under which it keeps its state.
func (p *GitPoller) Name() string { return p.cfg.Name }

// Run polls every PollInterval (at once too when PollAtLaunch) until ctx is
// done, then returns nil. A failed poll is logged and retried at the next
// interval; it never ends Run.
func (p *GitPoller) Run(ctx context.Context) error {
	if p.cfg.PollAtLaunch {
		p.pollAndLog(ctx)
	}
	t := time.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.pollAndLog(ctx)
		}
	}
}

func (p *GitPoller) pollAndLog(ctx context.Context) {
	err := p.Poll(ctx)
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.Is(err, ErrPollTimeout):
		p.log.Warn("poll timed out; retrying at the next interval", "poll_timeout", p.cfg.PollTimeout, "err", err, "in", p.cfg.PollInterval)
	default:
		p.log.Warn("poll failed; retrying at the next interval", "err", err, "in", p.cfg.PollInterval)
	}
}

// Poll fetches the followed refs once and announces the new commits. On the
// very first poll of a poller (no state in the store) it records the tips
// and announces nothing, as buildbot's GitPoller. A branch seen for the
// first time announces only its tip, and nothing if its tip is already
// known (unless BuildPushesWithNoCommits). A branch that moved announces
// the commits reachable from its new tip and from no tip seen before
// (of any branch), oldest first, so a force-push announces only the new
// commits. The changes are stored with the new tips in one transaction,
// then passed to notify.
//
// A poll that fails in the mirror (not in reaching the remote) checks the
// mirror, and if it is damaged (say by a kill in the middle of a fetch)
// sets it aside, logs what was damaged, makes a new one and polls again at
// once: the tips seen are in the store, so the new mirror announces
// exactly the commits not announced yet.
//
// A poll that takes longer than PollTimeout is cut short (its connections
// closed) and returns an error wrapping ErrPollTimeout.
func (p *GitPoller) Poll(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pctx, cancel := context.WithTimeoutCause(ctx, p.cfg.PollTimeout, ErrPollTimeout)
	defer cancel()
	changes, err := p.poll(pctx, "")
	if me := (mirrorError{}); errors.As(err, &me) && pctx.Err() == nil {
		changes, err = p.repair(pctx, err)
	}
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(pctx), ErrPollTimeout) {
		err = fmt.Errorf("%w after %s (poll_timeout): %v", ErrPollTimeout, p.cfg.PollTimeout, err)
	}
	if err != nil {
		return fmt.Errorf("poll %s: %w", p.cfg.RepoURL, err)
	}
	p.removeAside()
	if len(changes) > 0 {
		p.log.Info("new changes", "count", len(changes))
		if p.notify != nil {
			p.notify(changes)
		}
	}
	return nil
}

// mirrorError is a failure of a poll that may lie in the mirror.
type mirrorError struct{ err error }

func (e mirrorError) Error() string { return e.err.Error() }
func (e mirrorError) Unwrap() error { return e.err }

// asideDir is where a damaged mirror is moved while a new one is made; the
// poller never reads it.
func (p *GitPoller) asideDir() string {
	return filepath.Clean(p.cfg.Workdir) + ".damaged"
}

// repair checks the mirror after a poll failed with pollErr in it; if the
// mirror is damaged, it sets it aside and polls again with a new one.
func (p *GitPoller) repair(ctx context.Context, pollErr error) ([]store.Change, error) {
	last, _, err := p.lastTips()
	if err != nil {
		return nil, errors.Join(pollErr, err)
	}
	damage := checkMirror(p.cfg.Workdir, last)
	if ctx.Err() != nil {
		return nil, pollErr // a check cut short tells nothing
	}
	if damage == nil {
		p.log.Debug("git mirror checked after a failed poll: sound", "workdir", p.cfg.Workdir)
		return nil, pollErr // the failure lies elsewhere
	}
	aside := p.asideDir()
	if err := looksLikeMirror(p.cfg.Workdir); err != nil {
		return nil, fmt.Errorf("%w; the mirror is damaged (%v), but %v", pollErr, damage, err)
	}
	p.log.Warn("git mirror damaged: setting it aside and fetching a new one",
		"workdir", p.cfg.Workdir, "damage", damage, "poll_err", pollErr)
	if err := os.RemoveAll(aside); err != nil {
		return nil, fmt.Errorf("%w; remove %s: %v", pollErr, aside, err)
	}
	if err := os.Rename(p.cfg.Workdir, aside); err != nil {
		return nil, fmt.Errorf("%w; set the damaged mirror aside: %v", pollErr, err)
	}
	changes, err := p.poll(ctx, aside)
	if err != nil {
		return nil, fmt.Errorf("poll with a new mirror: %w", err)
	}
	p.log.Info("git mirror rebuilt", "workdir", p.cfg.Workdir)
	return changes, nil
}

// removeAside removes a damaged mirror set aside, once a poll went well
// with the new one (or after a master killed during a repair restarts).
func (p *GitPoller) removeAside() {
	aside := p.asideDir()
	if _, err := os.Lstat(aside); err != nil {
		return
	}
	if err := os.RemoveAll(aside); err != nil {
		p.log.Warn("could not remove the damaged mirror", "dir", aside, "err", err)
	}
}

// lastTips returns the tips the poller saw last, by branch, and whether
// there are any stored.
func (p *GitPoller) lastTips() (map[string]string, bool, error) {
	raw, found, err := p.st.GetState(p.cfg.Name, stateKey)
	if err != nil {
		return nil, false, err
	}
	last := map[string]string{}
	if found {
		if err := json.Unmarshal(raw, &last); err != nil {
			return nil, false, fmt.Errorf("decode state %s: %w", stateKey, err)
		}
	}
	return last, found, nil
}

// poll polls once; aside, if not empty, is a damaged mirror set aside whose
// objects the walk may read (see mirror.aside).
func (p *GitPoller) poll(ctx context.Context, aside string) ([]store.Change, error) {
	if p.cfg.Workdir == "" {
		return nil, errors.New("no workdir configured")
	}
	r, err := p.remote()
	if err != nil {
		return nil, remoteError{err}
	}
	rr, err := r.list(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, remoteError{fmt.Errorf("list refs: %w", err)}
	}
	selected := p.selectRefs(rr) // branch → ref
	last, found, err := p.lastTips()
	if err != nil {
		return nil, err
	}
	if found {
		remote := make(map[string]string, len(selected))
		for branch, ref := range selected {
			remote[branch] = rr.tip(ref)
		}
		if maps.Equal(last, remote) {
			return nil, nil // nothing moved: no need to fetch
		}
	}

	m, err := openMirror(p.cfg.Workdir)
	if err != nil {
		return nil, mirrorError{err}
	}
	defer func() {
		if m.received {
			// go-git's indexer held a 96 MiB cache of delta bases and a
			// record per object received, garbage once the pack's index
			// is written, and the walk as much again for a large push.
			// Give that memory back now rather than over the minutes the
			// runtime's scavenger takes. This does not bring the master
			// back to its idle RSS: measured, a master idle at 18-19 MB
			// was at 33-38 MB after a first clone of 20k commits.
			debug.FreeOSMemory()
		}
	}()
	if aside != "" {
		if m.aside, err = openRepo(aside, false); err != nil {
			p.log.Debug("the damaged mirror does not open: walking without it", "dir", aside, "err", err)
			m.aside = nil
		}
	}
	tips, err := p.fetch(ctx, m, r, rr, selected)
	if err != nil {
		return nil, mirrorError{err}
	}
	next := maps.Clone(tips)
	var changes []store.Change
	if found {
		changes, err = p.newChanges(ctx, m, last, tips, true)
		if err != nil && m.aside != nil && ctx.Err() == nil {
			p.log.Debug("the walk failed with the damaged mirror's objects: walking without them", "err", err)
			changes, err = p.newChanges(ctx, m, last, tips, false)
		}
		if err != nil {
			return nil, mirrorError{err}
		}
	} else {
		p.log.Info("first poll: recording the tips, announcing nothing", "branches", len(tips))
	}
	if found && len(changes) == 0 && maps.Equal(last, next) {
		return nil, nil
	}
	value, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	return p.st.AddChangesAndState(changes, p.cfg.Name, stateKey, value)
}

func dirExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// newChanges returns the changes between the last seen tips and the new
// ones, branch by branch in name order, each branch's oldest first. With
// withAside, the walk also reads the damaged mirror set aside, if any.
func (p *GitPoller) newChanges(ctx context.Context, m *mirror, last, tips map[string]string, withAside bool) ([]store.Change, error) {
	objs := m.objects(withAside)
	var known []plumbing.Hash
	for _, branch := range slices.Sorted(maps.Keys(last)) {
		known = append(known, plumbing.NewHash(last[branch]))
	}
	var changes []store.Change
	for _, branch := range slices.Sorted(maps.Keys(tips)) {
		tip := plumbing.NewHash(tips[branch])
		old, wasSeen := last[branch]
		if wasSeen && old == tip.String() {
			continue
		}
		commits, err := newCommits(ctx, objs, tip, known)
		if err != nil {
			return nil, fmt.Errorf("branch %s: %w", branch, err)
		}
		switch {
		case !wasSeen && len(commits) > 0:
			p.log.Info("new branch: announcing its tip", "branch", branch, "revision", tip)
			commits = commits[len(commits)-1:]
		case len(commits) == 0 && p.cfg.BuildPushesWithNoCommits:
			p.log.Info("branch moved without new commits: announcing its tip", "branch", branch, "revision", tip, "new", !wasSeen)
			c, err := object.GetCommit(objs, tip)
			if err != nil {
				return nil, fmt.Errorf("branch %s: %w", branch, err)
			}
			commits = []*object.Commit{c}
		}
		for _, c := range commits {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			ch, err := p.change(branch, c)
			if err != nil {
				return nil, fmt.Errorf("branch %s: %w", branch, err)
			}
			changes = append(changes, ch)
		}
		if !slices.Contains(known, tip) {
			known = append(known, tip)
		}
	}
	return changes, nil
}

// change describes commit c of branch as buildbot's GitPoller does.
func (p *GitPoller) change(branch string, c *object.Commit) (store.Change, error) {
	files, err := changedFiles(c)
	if err != nil {
		return store.Change{}, fmt.Errorf("files of %s: %w", c.Hash, err)
	}
	rev := c.Hash.String()
	ch := store.Change{
		Author:     signature(c.Author),
		Committer:  signature(c.Committer),
		Comments:   strings.TrimSpace(c.Message),
		Branch:     branch,
		Revision:   rev,
		Repository: p.cfg.RepoURL,
		Project:    p.cfg.Project,
		Category:   p.cfg.Category,
		Codebase:   p.cfg.Codebase,
		When:       c.Committer.When.UTC(),
		Files:      files,
	}
	if p.cfg.RevLink != "" {
		ch.RevLink = strings.ReplaceAll(p.cfg.RevLink, "%s", rev)
	}
	return ch, nil
}
