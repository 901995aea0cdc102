package changesource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/utils/ioutil"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/http/httpproxy"
)

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

// remote is how a poll reaches the remote: its endpoint, and the
// credentials and proxy of this poll.
type remote struct {
	url    string
	ep     *transport.Endpoint
	auth   transport.AuthMethod
	secret string // the name of the secret that is the http password, if any
	proxy  transport.ProxyOptions
}

// remote parses the poller's URL and reads what reaching it takes: the
// ssh key and known hosts, the HTTP password (a secret, read at each poll
// so that a changed one is used at once), the proxy from the environment.
func (p *GitPoller) remote() (*remote, error) {
	ep, err := transport.NewEndpoint(p.cfg.RepoURL)
	if err != nil {
		return nil, fmt.Errorf("repourl: %w", err)
	}
	r := &remote{url: p.cfg.RepoURL, ep: ep}
	switch ep.Protocol {
	case "file":
	case "ssh":
		if r.auth, err = p.sshAuth(ep); err != nil {
			return nil, err
		}
	case "http", "https":
		if p.cfg.HTTPUsername != "" || p.cfg.HTTPPasswordSecret != "" {
			password := ""
			if p.cfg.HTTPPasswordSecret != "" {
				if p.cfg.Secrets == nil {
					return nil, fmt.Errorf("http password: secret %q: no secrets provider configured", p.cfg.HTTPPasswordSecret)
				}
				if password, err = p.cfg.Secrets.Get(p.cfg.HTTPPasswordSecret); err != nil {
					return nil, fmt.Errorf("http password: %w", err)
				}
			}
			user := p.cfg.HTTPUsername
			if user == "" {
				user = "git" // a token alone: most forges take any user name
			}
			r.auth = &githttp.BasicAuth{Username: user, Password: password}
			r.secret = p.cfg.HTTPPasswordSecret
		}
		if r.proxy, err = proxyFor(ep); err != nil {
			return nil, err
		}
	case "git":
	default:
		return nil, fmt.Errorf("repourl: unsupported protocol %q", ep.Protocol)
	}
	return r, nil
}

// proxyFor returns the proxy of http_proxy, https_proxy and no_proxy (or
// their upper-case forms) for ep, read now (net/http reads them once per
// process). As in net/http, a loopback host is never proxied.
func proxyFor(ep *transport.Endpoint) (transport.ProxyOptions, error) {
	u := &url.URL{Scheme: ep.Protocol, Host: ep.Host}
	if ep.Port != 0 {
		u.Host = net.JoinHostPort(ep.Host, fmt.Sprint(ep.Port))
	}
	pu, err := httpproxy.FromEnvironment().ProxyFunc()(u)
	if err != nil {
		return transport.ProxyOptions{}, fmt.Errorf("proxy: %w", err)
	}
	if pu == nil {
		return transport.ProxyOptions{}, nil
	}
	opts := transport.ProxyOptions{URL: (&url.URL{Scheme: pu.Scheme, Host: pu.Host}).String()}
	if pu.User != nil {
		opts.Username = pu.User.Username()
		opts.Password, _ = pu.User.Password()
	}
	return opts, nil
}

// sshAuth is the key (SSHKeyFile, or else the ssh agent, as go-git does)
// and the host key check (SSHKnownHostsFile, or else SSH_KNOWN_HOSTS,
// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts) of an ssh remote. A host
// whose key is not listed is refused, never trusted on first use.
func (p *GitPoller) sshAuth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	user := ep.User
	if user == "" {
		user = "git"
	}
	var files []string
	where := "the default known_hosts files (SSH_KNOWN_HOSTS, ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts)"
	if p.cfg.SSHKnownHostsFile != "" {
		if _, err := os.Stat(p.cfg.SSHKnownHostsFile); err != nil {
			return nil, fmt.Errorf("ssh known hosts: %w", err)
		}
		files = []string{p.cfg.SSHKnownHostsFile}
		where = p.cfg.SSHKnownHostsFile
	}
	db, err := gitssh.NewKnownHostsDb(files...)
	if err != nil {
		return nil, fmt.Errorf("ssh known hosts: %w", err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostPort := net.JoinHostPort(ep.Host, fmt.Sprint(port))
	check := db.HostKeyCallback()
	helper := gitssh.HostKeyCallbackHelper{
		HostKeyCallback: func(hostname string, addr net.Addr, key ssh.PublicKey) error {
			err := check(hostname, addr, key)
			switch {
			case knownhosts.IsHostUnknown(err):
				return fmt.Errorf("ssh host key of %s (%s %s) is not in %s: refusing to connect (add the host's key there, checked by other means than this connection)",
					hostname, key.Type(), ssh.FingerprintSHA256(key), where)
			case knownhosts.IsHostKeyChanged(err):
				return fmt.Errorf("ssh host key of %s (%s %s) does not match the one in %s: refusing to connect",
					hostname, key.Type(), ssh.FingerprintSHA256(key), where)
			}
			return err
		},
		HostKeyAlgorithms: db.HostKeyAlgorithms(hostPort),
	}
	if p.cfg.SSHKeyFile == "" {
		auth, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("ssh: no ssh_private_key_file and no agent: %w", err)
		}
		auth.HostKeyCallbackHelper = helper
		return auth, nil
	}
	if _, err := os.Stat(p.cfg.SSHKeyFile); err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	pemBytes, err := os.ReadFile(p.cfg.SSHKeyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	// go-git would try the empty passphrase and say "bcrypt_pbkdf: empty
	// password"; a poller has no passphrase to give.
	if _, err := ssh.ParseRawPrivateKey(pemBytes); err != nil {
		if pm := (*ssh.PassphraseMissingError)(nil); errors.As(err, &pm) {
			return nil, fmt.Errorf("ssh key %s is protected by a passphrase: keys with a passphrase are not supported (use a key without one, readable by the master's user only, or the ssh agent)", p.cfg.SSHKeyFile)
		}
	}
	auth, err := gitssh.NewPublicKeysFromFile(user, p.cfg.SSHKeyFile, "")
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", p.cfg.SSHKeyFile, err)
	}
	auth.HostKeyCallbackHelper = helper
	return auth, nil
}

// goRemote is a go-git remote of the URL, over the storage s.
func (r *remote) goRemote(s storage.Storer) *git.Remote {
	return git.NewRemote(s, &gitconfig.RemoteConfig{Name: "origin", URLs: []string{r.url}})
}

// proxyOptions returns the proxy options of an operation on the remote
// under ctx, and the function to call once it has returned. Over ssh they
// make go-git dial through a dialer that closes the connection when ctx is
// done (see withPollDial); go-git's http and git transports end their
// connections with ctx themselves.
func (r *remote) proxyOptions(ctx context.Context) (transport.ProxyOptions, func()) {
	if r.ep.Protocol == "ssh" {
		return withPollDial(ctx)
	}
	return r.proxy, func() {}
}

// refusedError is an http(s) remote's refusal of the poll's credentials
// (or of a poll without any), said without the page the server sent with
// it. It unwraps to go-git's transport error.
type refusedError struct {
	msg string
	err error
}

func (e *refusedError) Error() string { return e.msg }
func (e *refusedError) Unwrap() error { return e.err }

// refused returns err, or when an http(s) remote refused the poll's
// credentials (401) or access (403) a refusedError saying so in a line:
// go-git's error carries the server's whole 401 or 403 page, often HTML.
func (r *remote) refused(err error) error {
	if err == nil || (r.ep.Protocol != "http" && r.ep.Protocol != "https") {
		return err
	}
	where := (&url.URL{Scheme: r.ep.Protocol, Host: r.ep.Host, Path: r.ep.Path}).String()
	if r.ep.Port != 0 {
		where = (&url.URL{Scheme: r.ep.Protocol, Host: net.JoinHostPort(r.ep.Host, fmt.Sprint(r.ep.Port)), Path: r.ep.Path}).String()
	}
	var creds string
	if ba, ok := r.auth.(*githttp.BasicAuth); ok {
		creds = fmt.Sprintf("http_username %q", ba.Username)
		if r.secret != "" {
			creds += ", secret " + r.secret
		}
	} else if r.ep.User != "" {
		creds = "the user and password in the repourl"
	}
	switch {
	case creds == "" && errors.Is(err, transport.ErrAuthenticationRequired):
		return &refusedError{fmt.Sprintf("%s requires credentials: set http_username and http_password_secret", where), err}
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return &refusedError{fmt.Sprintf("credentials refused by %s (%s)", where, creds), err}
	case creds == "" && errors.Is(err, transport.ErrAuthorizationFailed):
		return &refusedError{fmt.Sprintf("access refused by %s (no credentials given)", where), err}
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return &refusedError{fmt.Sprintf("access refused by %s (%s)", where, creds), err}
	}
	return err
}

// list lists the branches and tags of the remote, and the branch its HEAD
// names, as git ls-remote does. It reads the remote only: nothing is
// written anywhere.
func (r *remote) list(ctx context.Context) (remoteRefs, error) {
	if r.ep.Protocol == "file" {
		src, err := openLocal(r.ep.Path)
		if err != nil {
			return remoteRefs{}, err
		}
		return listLocal(src)
	}
	proxy, release := r.proxyOptions(ctx)
	defer release()
	refs, err := r.goRemote(nil).ListContext(ctx, &git.ListOptions{
		Auth: r.auth, ProxyOptions: proxy, PeelingOption: git.AppendPeeled,
	})
	err = r.refused(err)
	rr := remoteRefs{refs: map[string]string{}, peeled: map[string]string{}}
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return rr, nil
	}
	if err != nil {
		return rr, err
	}
	var symHead, hashHead string
	for _, ref := range refs {
		name := ref.Name().String()
		switch {
		case name == "HEAD" && ref.Type() == plumbing.SymbolicReference:
			symHead = ref.Target().String()
		case ref.Type() != plumbing.HashReference:
		case name == "HEAD":
			hashHead = ref.Hash().String()
		case strings.HasPrefix(name, "refs/tags/") && strings.HasSuffix(name, "^{}"):
			rr.peeled[strings.TrimSuffix(name, "^{}")] = ref.Hash().String()
		case strings.HasPrefix(name, "refs/heads/") || strings.HasPrefix(name, "refs/tags/"):
			rr.refs[name] = ref.Hash().String()
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
// to the same name (+ref:ref, no tags followed), and returns the commit
// each one points at, by branch. A ref that names no commit (a tag of a
// tree) is left out with a warning. go-git writes the pack it receives to
// the mirror's objects/pack as it reads it, and its index once whole.
func (p *GitPoller) fetch(ctx context.Context, m *mirror, r *remote, rr remoteRefs, selected map[string]string) (map[string]string, error) {
	tips := make(map[string]string, len(selected))
	if len(selected) == 0 {
		p.log.Debug("no ref to follow on the remote")
		return tips, nil
	}
	names := slices.Sorted(maps.Values(selected))
	specs := make([]gitconfig.RefSpec, len(names))
	for i, n := range names {
		specs[i] = gitconfig.RefSpec("+" + n + ":" + n)
	}
	var err error
	if r.ep.Protocol == "file" {
		err = fetchLocal(ctx, r.ep.Path, m.repo, rr, names)
	} else {
		for try := 1; ; try++ {
			proxy, release := r.proxyOptions(ctx)
			err = r.goRemote(m.repo.Storer).FetchContext(ctx, &git.FetchOptions{
				RefSpecs: specs, Auth: r.auth, ProxyOptions: proxy, Tags: git.NoTags, Force: true,
			})
			release()
			err = r.refused(err)
			if try == 2 || ctx.Err() != nil || !inputClosedEarly(err) {
				break
			}
			p.log.Info("fetch: the remote closed the session before the request was sent whole; fetching again", "err", err)
		}
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("fetch: %w", err)
	}
	m.received = err == nil
	for _, b := range slices.Sorted(maps.Keys(selected)) {
		ref := selected[b]
		h, err := peel(m.repo.Storer, plumbing.NewHash(rr.refs[ref]))
		var notCommit notCommitError
		switch {
		case errors.As(err, &notCommit):
			p.log.Warn("ignoring a ref that names no commit", "ref", ref, "type", notCommit.typ)
		case err != nil:
			// Just fetched: it must be there.
			return nil, fmt.Errorf("ref %s: %w", ref, err)
		default:
			tips[b] = h.String()
		}
	}
	return tips, nil
}

// openLocal opens a repository on this machine: bare, or the .git of a
// work tree; with the poller's memory bounds, read only.
func openLocal(path string) (*git.Repository, error) {
	dir := path
	if fi, err := os.Stat(filepath.Join(path, ".git")); err == nil && fi.IsDir() {
		dir = filepath.Join(path, ".git")
	}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, git.ErrRepositoryNotExists)
	}
	src, err := openRepo(dir, false)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return src, nil
}

// listLocal lists the branches and tags of a repository on this machine,
// with its tags peeled and the branch its HEAD names, as git ls-remote
// would.
func listLocal(src *git.Repository) (remoteRefs, error) {
	rr := remoteRefs{refs: map[string]string{}, peeled: map[string]string{}}
	iter, err := src.Storer.IterReferences()
	if err != nil {
		return rr, err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		name := ref.Name()
		if ref.Type() != plumbing.HashReference || !(name.IsBranch() || name.IsTag()) {
			return nil
		}
		rr.refs[name.String()] = ref.Hash().String()
		if name.IsTag() {
			obj, err := src.Storer.EncodedObject(plumbing.AnyObject, ref.Hash())
			if err == nil && obj.Type() == plumbing.TagObject {
				h, err := peel(src.Storer, ref.Hash())
				var nc notCommitError
				switch {
				case errors.As(err, &nc):
					rr.peeled[name.String()] = nc.hash.String()
				case err != nil:
					return fmt.Errorf("tag %s: %w", name, err)
				default:
					rr.peeled[name.String()] = h.String()
				}
			}
		}
		return nil
	})
	if err != nil {
		return rr, err
	}
	var symHead, hashHead string
	head, err := src.Storer.Reference(plumbing.HEAD)
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound):
	case err != nil:
		return rr, fmt.Errorf("HEAD: %w", err)
	case head.Type() == plumbing.SymbolicReference:
		symHead = head.Target().String()
	default:
		hashHead = head.Hash().String()
	}
	rr.head = headBranch(symHead, hashHead, rr.refs)
	if _, ok := rr.refs[rr.head]; !ok && symHead != "" {
		rr.head = "" // HEAD names a branch not born yet
	}
	return rr, nil
}

// fetchLocal fetches names (refs of rr) from the repository at path into
// dst, as go-git's upload-pack would serve them, in process: the objects
// reachable from the refs and from none of dst's refs are packed and the
// pack written to dst's objects/pack, then dst's refs are set. No git
// binary, and no transport registered in go-git's global table.
func fetchLocal(ctx context.Context, path string, dst *git.Repository, rr remoteRefs, names []string) error {
	src, err := openLocal(path)
	if err != nil {
		return err
	}
	var wants, haves []plumbing.Hash
	for _, n := range names {
		wants = append(wants, plumbing.NewHash(rr.refs[n]))
	}
	iter, err := dst.Storer.IterReferences()
	if err != nil {
		return err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		// What the source no longer has (a force-push, then a gc) cannot
		// be left out of the pack: only its own objects can.
		if ref.Type() == plumbing.HashReference && src.Storer.HasEncodedObject(ref.Hash()) == nil {
			haves = append(haves, ref.Hash())
		}
		return nil
	})
	if err != nil {
		return err
	}
	ignore, err := revlist.Objects(src.Storer, haves, nil)
	if err != nil {
		return err
	}
	objs, err := revlist.Objects(src.Storer, wants, ignore)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		pr, pw := io.Pipe()
		go func() {
			_, err := packfile.NewEncoder(pw, src.Storer, false).Encode(objs, 10)
			pw.CloseWithError(err)
		}()
		err = packfile.UpdateObjectStorage(dst.Storer, ioutil.NewContextReadCloser(ctx, pr))
		pr.CloseWithError(errors.New("fetch ended")) // stops the encoder if the write failed
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	for _, n := range names {
		if err := dst.Storer.SetReference(plumbing.NewHashReference(plumbing.ReferenceName(n), plumbing.NewHash(rr.refs[n]))); err != nil {
			return err
		}
	}
	if len(objs) == 0 {
		return git.NoErrAlreadyUpToDate
	}
	return nil
}

// inputClosedEarly reports whether err is go-git's "closing input: EOF":
// over ssh, the remote's git-upload-pack may close the session before
// go-git closes its side of the request, and the fetch fails though
// nothing went wrong; it received nothing, so fetching again is safe.
func inputClosedEarly(err error) bool {
	return err != nil && strings.Contains(err.Error(), "closing input: EOF")
}
