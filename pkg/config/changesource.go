package config

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DefaultGitPollerWorkdir is the directory, under the master's basedir, in
// which each git poller keeps its bare mirror by default.
const DefaultGitPollerWorkdir = "gitpoller-work"

// DefaultPollTimeout bounds a poll when poll_timeout is not set.
const DefaultPollTimeout = 5 * time.Minute

// ChangeSource is one [[change_source]] table: a git poller, with buildbot
// GitPoller's options in snake_case.
type ChangeSource struct {
	Type                     string   // type: "git_poller" only for now
	Name                     string   // name: unique among change sources; default "GitPoller:" + repourl, as buildbot
	RepoURL                  string   // repourl, required: https://, ssh://, user@host:path, file:// or a local path
	Branches                 []string // branches as an array: the branches to follow; unset means the remote's default branch only
	AllBranches              bool     // branches = true: follow every branch
	BranchRegex              string   // branch_regex: follow the branches (with only_tags, the tags) whose name it matches, in Go's regexp syntax; not with branches
	PollInterval             Duration // poll_interval; default DefaultPollInterval (10m, as buildbot); must be positive
	PollTimeout              Duration // poll_timeout: the longest a poll may take before it is cut short, logged and tried again at the next interval; default DefaultPollTimeout (5m); must be positive
	PollAtLaunch             bool     // poll_at_launch: poll when the master starts; default false (first poll after one interval)
	OnlyTags                 bool     // only_tags: follow tags instead of branches; not with branches
	BuildPushesWithNoCommits bool     // build_pushes_with_no_commits: announce a branch that moved without new commits; default false
	Category                 string   // category, set on every change
	Project                  string   // project, set on every change
	Codebase                 string   // codebase, set on every change (buildbot's GitPoller codebase); default ""
	RevLink                  string   // revlink: a change's link, with %s replaced by the revision; must contain %s
	Workdir                  string   // workdir: the bare mirror, relative to the master's basedir; default DefaultGitPollerWorkdir + "/" + the name made safe for a file name
	SSHPrivateKeyFile        string   // ssh_private_key_file: the key for ssh URLs; must exist; a relative path is made relative to the config file's directory; unset means the ssh agent's keys
	SSHKnownHostsFile        string   // ssh_known_hosts_file: the host keys an ssh remote may have (OpenSSH's known_hosts format); must exist; relative as ssh_private_key_file; unset means SSH_KNOWN_HOSTS, ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts. An unknown host is refused
	HTTPUsername             string   // http_username: the user name for http(s) URLs; with http_password_secret only, "git"
	HTTPPasswordSecret       string   // http_password_secret: the NAME of the secret (from [[secrets_providers]]) that is the password or token for http(s) URLs; read at each poll
	Line                     int      // line of the [[change_source]] table
}

// WorkdirPath returns the absolute path of the mirror of a master whose
// base directory is basedir.
func (cs ChangeSource) WorkdirPath(basedir string) string {
	p := cs.Workdir
	if !filepath.IsAbs(p) {
		p = filepath.Join(basedir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// BranchRegexp returns BranchRegex compiled, or nil when it is empty. Parse
// has checked that it compiles.
func (cs ChangeSource) BranchRegexp() *regexp.Regexp {
	if cs.BranchRegex == "" {
		return nil
	}
	return regexp.MustCompile(cs.BranchRegex)
}

// unsafeInName matches what a default workdir does not keep of a name.
var unsafeInName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (d *decoder) changeSource(t *table, seen map[string]int) ChangeSource {
	cs := ChangeSource{Line: t.line(), PollInterval: Duration{DefaultPollInterval}, PollTimeout: Duration{DefaultPollTimeout}}
	cs.Type, _ = t.oneOf("type", "change source type", "git_poller")
	cs.RepoURL, _ = t.required("repourl")

	if t.has("name") {
		cs.Name = t.unique(seen, "change source")
	} else if cs.RepoURL != "" {
		cs.Name = "GitPoller:" + cs.RepoURL
		if first, dup := seen[cs.Name]; dup {
			t.errorf("repourl", "another change source polls %q (line %d): give each a distinct name", cs.RepoURL, first)
		} else {
			seen[cs.Name] = t.d.line(t.path.key("repourl"))
		}
	}

	if v, ok := t.get("branches"); ok {
		switch v := v.(type) {
		case bool:
			if !v {
				t.errorf("branches", "expected an array of strings or true, got false")
			}
			cs.AllBranches = v
		case []any:
			if branches, ok := t.strings("branches"); ok {
				if len(branches) == 0 {
					t.errorf("branches", "must not be empty (leave it out for the default branch)")
				}
				for i, b := range branches {
					if strings.TrimSpace(b) == "" {
						k := t.path.key("branches").index(i)
						t.d.errorAt(k, k, "must not be empty")
					}
				}
				cs.Branches = branches
			}
		default:
			t.errorf("branches", "expected an array of strings or true, got %s", typeName(v))
		}
	}
	if s, ok := t.str("branch_regex"); ok {
		if _, err := regexp.Compile(s); err != nil {
			t.errorf("branch_regex", "%v", err)
		} else if s == "" {
			t.errorf("branch_regex", "must not be empty")
		} else {
			cs.BranchRegex = s
		}
		if t.has("branches") {
			t.errorf("branch_regex", "set either branches or branch_regex, not both")
		}
	}
	if x, ok := t.duration("poll_interval"); ok {
		if x.Duration == 0 {
			t.errorf("poll_interval", "must be positive")
		} else {
			cs.PollInterval = x
		}
	}
	if x, ok := t.duration("poll_timeout"); ok {
		if x.Duration <= 0 {
			t.errorf("poll_timeout", "must be positive")
		} else {
			cs.PollTimeout = x
		}
	}
	cs.PollAtLaunch, _ = t.boolean("poll_at_launch")
	cs.OnlyTags, _ = t.boolean("only_tags")
	if cs.OnlyTags && t.has("branches") {
		t.errorf("only_tags", "only_tags does not go with branches (use branch_regex to choose tags)")
	}
	cs.BuildPushesWithNoCommits, _ = t.boolean("build_pushes_with_no_commits")
	cs.Category, _ = t.str("category")
	cs.Project, _ = t.str("project")
	cs.Codebase, _ = t.str("codebase")
	if s, ok := t.str("revlink"); ok {
		if !strings.Contains(s, "%s") {
			t.errorf("revlink", "%q has no %%s for the revision", s)
		} else {
			cs.RevLink = s
		}
	}
	cs.Workdir = filepath.Join(DefaultGitPollerWorkdir, unsafeInName.ReplaceAllString(cs.Name, "_"))
	if t.has("workdir") {
		if s, ok := t.required("workdir"); ok {
			cs.Workdir = s
		}
	}
	if s, ok := t.str("ssh_private_key_file"); ok {
		cs.SSHPrivateKeyFile = d.existingFile(t, "ssh_private_key_file", s)
	}
	if s, ok := t.str("ssh_known_hosts_file"); ok {
		cs.SSHKnownHostsFile = d.existingFile(t, "ssh_known_hosts_file", s)
	}
	for _, k := range []struct {
		key string
		v   *string
	}{{"http_username", &cs.HTTPUsername}, {"http_password_secret", &cs.HTTPPasswordSecret}} {
		s, ok := t.str(k.key)
		if !ok {
			continue
		}
		lower := strings.ToLower(cs.RepoURL)
		switch {
		case s == "":
			t.errorf(k.key, "must not be empty")
		case !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://"):
			t.errorf(k.key, "only for an http:// or https:// repourl")
		case urlHasUser(cs.RepoURL):
			t.errorf(k.key, "the repourl has credentials of its own: set them in one place")
		default:
			*k.v = s
		}
	}
	t.done()
	return cs
}

// distinctMirrors reports a change source whose mirror directory is that of
// an earlier one, or lies inside it or around it (names such as "p/one"
// and "p:one" both make gitpoller-work/p_one; so may an explicit workdir):
// two pollers would fetch into one repository and each take the other's
// refs for its own. tables are the [[change_source]] tables of css.
func (d *decoder) distinctMirrors(tables []*table, css []ChangeSource) {
	dirs := make([]string, len(css))
	for i, cs := range css {
		if cs.Workdir == "" {
			continue
		}
		dirs[i] = cs.WorkdirPath(d.dir)
		for j := range i {
			if dirs[j] == "" || cs.Name == "" || css[j].Name == "" || css[j].Name == cs.Name { // a duplicate name is reported as such
				continue
			}
			how := ""
			switch {
			case dirs[i] == dirs[j]:
				how = "is"
			case strings.HasPrefix(dirs[i], dirs[j]+string(filepath.Separator)):
				how = "lies inside"
			case strings.HasPrefix(dirs[j], dirs[i]+string(filepath.Separator)):
				how = "holds"
			default:
				continue
			}
			key := "workdir"
			if !tables[i].has(key) {
				key = "name"
				if !tables[i].has(key) {
					key = "repourl"
				}
			}
			tables[i].errorf(key, "the mirror of change source %q, %s, %s the mirror of change source %q (line %d): give each its own workdir (or a name that differs in more than the characters a directory name drops)",
				cs.Name, dirs[i], how, css[j].Name, css[j].Line)
			break
		}
	}
}

// existingFile returns path, made relative to the config file's directory,
// reporting key if it is empty or names no regular file.
func (d *decoder) existingFile(t *table, key, path string) string {
	if path == "" {
		t.errorf(key, "must not be empty")
		return ""
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(d.dir, path)
	}
	d.keyFile(t, key, path)
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		t.errorf(key, "%s: %v", path, err)
		return ""
	}
	if !fi.Mode().IsRegular() {
		t.errorf(key, "%s is not a regular file", path)
		return ""
	}
	return path
}

// urlHasUser reports whether url names a user (and perhaps a password).
func urlHasUser(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.User != nil
}
