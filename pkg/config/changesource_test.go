package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChangeSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte("host ssh-ed25519 AAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "master.toml")
	const url = "https://example.org/r.git"
	tests := []struct {
		name string
		toml string // the keys after type and repourl
		want ChangeSource
	}{
		{
			name: "defaults",
			want: ChangeSource{
				Name: "GitPoller:" + url, PollInterval: Duration{10 * time.Minute}, PollTimeout: Duration{5 * time.Minute},
				Workdir: "gitpoller-work/GitPoller_https_example.org_r.git",
			},
		},
		{
			name: "every key",
			toml: `
name = "hello"
branches = ["main", "release/1.x"]
poll_interval = "30s"
poll_timeout = "20m"
poll_at_launch = true
build_pushes_with_no_commits = true
category = "cat"
project = "proj"
revlink = "https://example.org/r/commit/%s"
workdir = "/var/db/gbb/hello.git"
ssh_private_key_file = "id_ed25519"
ssh_known_hosts_file = "known_hosts"
http_username = "ci"
http_password_secret = "gitpoller-token"
`,
			want: ChangeSource{
				Name: "hello", Branches: []string{"main", "release/1.x"},
				PollInterval: Duration{30 * time.Second}, PollTimeout: Duration{20 * time.Minute}, PollAtLaunch: true, BuildPushesWithNoCommits: true,
				Category: "cat", Project: "proj", RevLink: "https://example.org/r/commit/%s",
				Workdir: "/var/db/gbb/hello.git", SSHPrivateKeyFile: filepath.Join(dir, "id_ed25519"),
				SSHKnownHostsFile: filepath.Join(dir, "known_hosts"),
				HTTPUsername:      "ci", HTTPPasswordSecret: "gitpoller-token",
			},
		},
		{
			name: "all branches",
			toml: "name = \"all\"\nbranches = true\n",
			want: ChangeSource{Name: "all", AllBranches: true, PollInterval: Duration{10 * time.Minute}, PollTimeout: Duration{5 * time.Minute}, Workdir: "gitpoller-work/all"},
		},
		{
			name: "branch regex",
			toml: "branch_regex = '^release/'\n",
			want: ChangeSource{
				Name: "GitPoller:" + url, BranchRegex: "^release/", PollInterval: Duration{10 * time.Minute}, PollTimeout: Duration{5 * time.Minute},
				Workdir: "gitpoller-work/GitPoller_https_example.org_r.git",
			},
		},
		{
			name: "only tags",
			toml: "only_tags = true\nbranch_regex = '^v'\nname = \"tags\"\n",
			want: ChangeSource{Name: "tags", OnlyTags: true, BranchRegex: "^v", PollInterval: Duration{10 * time.Minute}, PollTimeout: Duration{5 * time.Minute}, Workdir: "gitpoller-work/tags"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustParse(t, file, "[[change_source]]\ntype = \"git_poller\"\nrepourl = \""+url+"\"\n"+strings.TrimPrefix(tc.toml, "\n"))
			tc.want.Type, tc.want.RepoURL, tc.want.Line = "git_poller", url, 1
			if diff := cmp.Diff([]ChangeSource{tc.want}, cfg.ChangeSources); diff != "" {
				t.Errorf("change source (-want +got):\n%s", diff)
			}
			cs := cfg.ChangeSources[0]
			if (cs.BranchRegexp() == nil) != (cs.BranchRegex == "") {
				t.Errorf("BranchRegexp() = %v for %q", cs.BranchRegexp(), cs.BranchRegex)
			}
		})
	}
}

func TestChangeSourceWorkdirPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ workdir, want string }{
		{"gitpoller-work/x", "/srv/master/gitpoller-work/x"},
		{"/var/db/x.git", "/var/db/x.git"},
	} {
		if got := (ChangeSource{Workdir: tc.workdir}).WorkdirPath("/srv/master"); got != tc.want {
			t.Errorf("WorkdirPath(%q) = %q, want %q", tc.workdir, got, tc.want)
		}
	}
}

func TestChangeSourceErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string // a leading newline is dropped, so line 1 is the line after the backquote
		want []string
	}{
		{
			name: "branches",
			toml: `
[[change_source]]
type = "git_poller"
repourl = "a"
branches = false
[[change_source]]
type = "git_poller"
repourl = "b"
branches = []
[[change_source]]
type = "git_poller"
repourl = "c"
branches = ["main", "", 3]
[[change_source]]
type = "git_poller"
repourl = "d"
branches = 1
`,
			want: []string{
				`master.toml:4: change_source[0].branches: expected an array of strings or true, got false`,
				`master.toml:8: change_source[1].branches: must not be empty (leave it out for the default branch)`,
				`master.toml:12: change_source[2].branches[2]: expected a string, got integer`,
				`master.toml:16: change_source[3].branches: expected an array of strings or true, got integer`,
			},
		},
		{
			name: "regex and tags",
			toml: `
[[change_source]]
type = "git_poller"
repourl = "a"
branch_regex = "release/("
[[change_source]]
type = "git_poller"
repourl = "b"
branches = true
branch_regex = "x"
only_tags = true
[[change_source]]
type = "git_poller"
repourl = "c"
only_tags = "yes"
`,
			want: []string{
				"master.toml:4: change_source[0].branch_regex: error parsing regexp: missing closing ): `release/(`",
				`master.toml:9: change_source[1].branch_regex: set either branches or branch_regex, not both`,
				`master.toml:10: change_source[1].only_tags: only_tags does not go with branches (use branch_regex to choose tags)`,
				`master.toml:14: change_source[2].only_tags: expected a boolean, got string`,
			},
		},
		{
			name: "names",
			toml: `
[[change_source]]
type = "git_poller"
repourl = "a"
[[change_source]]
type = "git_poller"
repourl = "a"
[[change_source]]
type = "git_poller"
repourl = "b"
name = "GitPoller:a"
[[change_source]]
type = "git_poller"
repourl = "c"
name = ""
`,
			want: []string{
				`master.toml:6: change_source[1].repourl: another change source polls "a" (line 3): give each a distinct name`,
				`master.toml:10: change_source[2].name: duplicate change source name "GitPoller:a" (first at line 3)`,
				`master.toml:14: change_source[3].name: must not be empty`,
			},
		},
		{
			name: "other keys",
			toml: `
[[change_source]]
type = "git_poller"
repourl = "a"
revlink = "https://example.org/commit/"
workdir = ""
ssh_private_key_file = "missing_key"
poll_at_launch = 1
category = 2
[[change_source]]
type = "git_poller"
repourl = "b"
ssh_private_key_file = "/"
build_pushes_with_no_commits = "no"
ssh_known_hosts_file = "missing_known_hosts"
http_username = "ci"
[[change_source]]
type = "git_poller"
repourl = "https://user:pw@example.org/r.git"
http_password_secret = "token"
http_username = ""
`,
			want: []string{
				`master.toml:4: change_source[0].revlink: "https://example.org/commit/" has no %s for the revision`,
				`master.toml:5: change_source[0].workdir: must not be empty`,
				`master.toml:6: change_source[0].ssh_private_key_file: missing_key: no such file or directory`,
				`master.toml:7: change_source[0].poll_at_launch: expected a boolean, got integer`,
				`master.toml:8: change_source[0].category: expected a string, got integer`,
				`master.toml:12: change_source[1].ssh_private_key_file: / is not a regular file`,
				`master.toml:13: change_source[1].build_pushes_with_no_commits: expected a boolean, got string`,
				`master.toml:14: change_source[1].ssh_known_hosts_file: missing_known_hosts: no such file or directory`,
				`master.toml:15: change_source[1].http_username: only for an http:// or https:// repourl`,
				`master.toml:19: change_source[2].http_password_secret: the repourl has credentials of its own: set them in one place`,
				`master.toml:20: change_source[2].http_username: must not be empty`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("master.toml", []byte(strings.TrimPrefix(tc.toml, "\n")))
			if cfg != nil {
				t.Errorf("Parse returned a config with errors")
			}
			if diff := cmp.Diff(tc.want, messages(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
