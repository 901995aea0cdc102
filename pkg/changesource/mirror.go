package changesource

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// mirror is the poller's bare repository, into which it fetches.
type mirror struct {
	dir string
	env []string // for the commands that reach the remote (GIT_SSH_COMMAND)
	// aside is the objects directory of the damaged mirror this one
	// replaces, while it is being made: what it still holds of the history
	// seen before lets the walk tell old commits from new ones that the
	// remote no longer has (a force-push while the mirror was damaged).
	// Empty otherwise. Only the walk reads it, never the fetch, so that
	// the new mirror holds every object it needs.
	aside string
}

// git runs git in the mirror.
func (m *mirror) git() gitCmd { return gitCmd{gitDir: m.dir} }

// walkGit runs git in the mirror, reading the objects it lacks from the
// damaged mirror set aside, if any and withAside.
func (m *mirror) walkGit(withAside bool) gitCmd {
	g := m.git()
	if withAside && m.aside != "" {
		g.env = []string{"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + m.aside}
	}
	return g
}

// openMirror opens the bare repository in dir, making it (git init --bare)
// if dir is missing or empty. It checks HEAD itself, since git takes a
// directory with a bad HEAD for no repository at all.
func openMirror(ctx context.Context, dir string) (*mirror, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o755); err != nil {
			return nil, fmt.Errorf("make mirror: %w", err)
		}
		if _, err := (gitCmd{}).run(ctx, "init", "--bare", "-q", "--", dir); err != nil {
			return nil, fmt.Errorf("make mirror: %w", err)
		}
		return &mirror{dir: dir}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	if err := checkHead(dir); err != nil {
		return nil, fmt.Errorf("open mirror %s: %w", dir, err)
	}
	return &mirror{dir: dir}, nil
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
func checkMirror(ctx context.Context, dir string, tips map[string]string) error {
	m, err := openMirror(ctx, dir)
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	g := m.git()
	g.stderr = &stderr
	out, err := g.run(ctx, "for-each-ref", "--format=%(objectname) %(refname)")
	if err != nil {
		return fmt.Errorf("list refs: %w", err)
	}
	if msg := lastLines(stderr.String(), 3); msg != "" {
		// git skips a ref it cannot read with a warning: that is damage.
		return fmt.Errorf("list refs: %s", msg)
	}
	var checks []objectCheck
	for line := range strings.Lines(string(out)) {
		oid, ref, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		if !ok || !isHash(oid) {
			return fmt.Errorf("list refs: unexpected line %q", line)
		}
		checks = append(checks, objectCheck{label: "ref " + ref, name: oid + "^{}"})
	}
	for _, branch := range slices.Sorted(maps.Keys(tips)) {
		checks = append(checks, objectCheck{label: "last seen tip of " + branch, name: tips[branch], commit: true})
	}
	objs, err := readObjects(ctx, m.git(), checks)
	if err != nil {
		return err
	}
	var next []objectCheck
	seen := map[string]bool{}
	for i, c := range checks {
		o := objs[i]
		if o.typ != "commit" {
			continue
		}
		for line := range strings.Lines(string(o.content)) {
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				break // the end of the header
			}
			key, oid, _ := strings.Cut(line, " ")
			if (key != "tree" && key != "parent") || seen[oid] {
				continue
			}
			seen[oid] = true
			next = append(next, objectCheck{
				label:  fmt.Sprintf("%s: %s %s of %s", c.label, key, oid, o.oid),
				name:   oid,
				commit: key == "parent",
			})
		}
	}
	_, err = readObjects(ctx, m.git(), next)
	return err
}

// objectCheck is an object checkMirror reads.
type objectCheck struct {
	label  string // what the object is, for the error
	name   string // how git names it
	commit bool   // it must be a commit
}

// gitObject is an object git read.
type gitObject struct {
	oid, typ string
	content  []byte
}

// readObjects reads the objects of checks whole (git cat-file --batch), and
// returns an error naming the first one that is missing, unreadable or not
// a commit where it must be one.
func readObjects(ctx context.Context, g gitCmd, checks []objectCheck) ([]gitObject, error) {
	if len(checks) == 0 {
		return nil, nil
	}
	var in strings.Builder
	for _, c := range checks {
		in.WriteString(c.name + "\n")
	}
	g.stdin = strings.NewReader(in.String())
	out, err := g.run(ctx, "cat-file", "--batch")
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// Some object does not read: find which, one at a time.
		for _, c := range checks {
			if _, cerr := g.run(ctx, "cat-file", "-p", c.name); cerr != nil {
				return nil, fmt.Errorf("%s: %w", c.label, cerr)
			}
		}
		return nil, err
	}
	objs := make([]gitObject, 0, len(checks))
	r := bufio.NewReader(bytes.NewReader(out))
	for _, c := range checks {
		header, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%s: git cat-file: short output", c.label)
		}
		fields := strings.Fields(header)
		if len(fields) == 2 && fields[1] == "missing" || len(fields) != 3 {
			return nil, fmt.Errorf("%s: %s: object missing", c.label, c.name)
		}
		var size int
		if _, err := fmt.Sscan(fields[2], &size); err != nil {
			return nil, fmt.Errorf("%s: git cat-file: bad header %q", c.label, header)
		}
		content := make([]byte, size+1)
		if _, err := io.ReadFull(r, content); err != nil {
			return nil, fmt.Errorf("%s: git cat-file: short output", c.label)
		}
		o := gitObject{oid: fields[0], typ: fields[1], content: content[:size]}
		if c.commit && o.typ != "commit" {
			return nil, fmt.Errorf("%s: %s is a %s, not a commit", c.label, o.oid, o.typ)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// remoteError is a failure that lies with the remote (or the way to it),
// not with the mirror: listing its refs. It never leads to checking the
// mirror, so a flaky remote costs no clone.
type remoteError struct{ err error }

func (e remoteError) Error() string { return e.err.Error() }
func (e remoteError) Unwrap() error { return e.err }

// remoteRefs are the refs a remote advertises.
type remoteRefs struct {
	refs   map[string]string // branches and tags: full name → object
	peeled map[string]string // annotated tags: full name → the commit (or other object) they tag
	head   string            // the branch HEAD names; "" if unknown
}

// tip returns the object ref names, through tags.
func (rr remoteRefs) tip(ref string) string {
	if h, ok := rr.peeled[ref]; ok {
		return h
	}
	return rr.refs[ref]
}

// remoteEnv is the environment of the commands that reach the remote.
func (p *GitPoller) remoteEnv() ([]string, error) {
	if p.cfg.SSHKeyFile == "" {
		return nil, nil
	}
	if _, err := os.Stat(p.cfg.SSHKeyFile); err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	return []string{"GIT_SSH_COMMAND=" + sshCommand(p.cfg.SSHKeyFile)}, nil
}

// listRemote lists the branches and tags of the remote (git ls-remote),
// and the branch its HEAD names.
func (p *GitPoller) listRemote(ctx context.Context, env []string) (remoteRefs, error) {
	out, err := gitCmd{env: env}.run(ctx, "ls-remote", "--symref", "--end-of-options", p.cfg.RepoURL)
	if err != nil {
		return remoteRefs{}, err
	}
	rr := remoteRefs{refs: map[string]string{}, peeled: map[string]string{}}
	var symHead, hashHead string
	for line := range strings.Lines(string(out)) {
		left, name, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		if !ok {
			return rr, fmt.Errorf("git ls-remote: unexpected line %q", line)
		}
		if target, ok := strings.CutPrefix(left, "ref: "); ok {
			if name == "HEAD" {
				symHead = target
			}
			continue
		}
		switch {
		case !isHash(left):
			return rr, fmt.Errorf("git ls-remote: unexpected line %q", line)
		case name == "HEAD":
			hashHead = left
		case strings.HasPrefix(name, "refs/tags/") && strings.HasSuffix(name, "^{}"):
			rr.peeled[strings.TrimSuffix(name, "^{}")] = left
		case strings.HasPrefix(name, "refs/heads/") || strings.HasPrefix(name, "refs/tags/"):
			rr.refs[name] = left
		}
	}
	rr.head = headBranch(symHead, hashHead, rr.refs)
	return rr, nil
}

// headBranch returns the branch HEAD names: its target when the remote
// says, else a branch at the same commit (main or master first).
func headBranch(symHead, hashHead string, refs map[string]string) string {
	if symHead != "" {
		return symHead
	}
	if hashHead == "" {
		return ""
	}
	var same []string
	for name, h := range refs {
		if strings.HasPrefix(name, "refs/heads/") && h == hashHead {
			same = append(same, name)
		}
	}
	rank := func(n string) int {
		switch n {
		case "refs/heads/main":
			return 0
		case "refs/heads/master":
			return 1
		}
		return 2
	}
	slices.SortFunc(same, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	if len(same) == 0 {
		return ""
	}
	return same[0]
}

// selectRefs returns the refs the poller follows, by branch name as
// changes carry it ("main", or "refs/tags/v1" for a tag).
func (p *GitPoller) selectRefs(rr remoteRefs) map[string]string {
	out := map[string]string{}
	re := p.cfg.BranchRegex
	for name := range rr.refs {
		short, isBranch := strings.CutPrefix(name, "refs/heads/")
		switch {
		case p.cfg.OnlyTags:
			if tag, ok := strings.CutPrefix(name, "refs/tags/"); ok && (re == nil || re.MatchString(tag)) {
				out[name] = name
			}
		case !isBranch:
		case p.cfg.AllBranches || re != nil:
			if re == nil || re.MatchString(short) {
				out[short] = name
			}
		case len(p.cfg.Branches) > 0:
			if slices.Contains(p.cfg.Branches, short) || slices.Contains(p.cfg.Branches, name) {
				out[short] = name
			}
		case name == rr.head:
			out[short] = name
		}
	}
	return out
}

// fetch fetches the refs of selected (branch → ref) into the mirror, each
// to the same name (git fetch --no-tags --force URL +ref:ref...), and
// returns the commit each one points at, by branch. A ref that names no
// commit (a tag of a tree) is left out with a warning.
func (p *GitPoller) fetch(ctx context.Context, m *mirror, rr remoteRefs, selected map[string]string) (map[string]string, error) {
	tips := make(map[string]string, len(selected))
	if len(selected) == 0 {
		p.log.Debug("no ref to follow on the remote")
		return tips, nil
	}
	names := slices.Sorted(maps.Values(selected))
	var specs strings.Builder
	for _, n := range names {
		fmt.Fprintf(&specs, "+%s:%s\n", n, n)
	}
	g := m.git()
	g.env = m.env
	g.stdin = strings.NewReader(specs.String())
	_, err := g.run(ctx, "-c", "gc.autoDetach=false", "-c", "maintenance.autoDetach=false",
		"fetch", "-q", "--no-tags", "--force", "--no-write-fetch-head", "--no-recurse-submodules",
		"--stdin", "--end-of-options", p.cfg.RepoURL)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}

	// What each fetched ref names, through tags, as the mirror has it.
	branches := slices.Sorted(maps.Keys(selected))
	var in strings.Builder
	for _, b := range branches {
		in.WriteString(rr.refs[selected[b]] + "^{}\n")
	}
	g = m.git()
	g.stdin = strings.NewReader(in.String())
	out, err := g.run(ctx, "cat-file", "--batch-check")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(branches) {
		return nil, fmt.Errorf("git cat-file: %d lines for %d refs", len(lines), len(branches))
	}
	for i, b := range branches {
		fields := strings.Fields(lines[i])
		switch {
		case len(fields) == 3 && fields[1] == "commit":
			tips[b] = fields[0]
		case len(fields) == 3:
			p.log.Warn("ignoring a ref that names no commit", "ref", selected[b], "type", fields[1])
		default:
			// Just fetched: it must be there.
			return nil, fmt.Errorf("ref %s: object %s missing after the fetch", selected[b], rr.refs[selected[b]])
		}
	}
	return tips, nil
}
