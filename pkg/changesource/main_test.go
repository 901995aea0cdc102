package changesource

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitBin is the git binary the tests make their fixture repositories
// with, and fixturePath the PATH it runs with. The poller under test runs
// with a PATH that has no git (see TestMain): the master needs none.
var gitBin, fixturePath string

// testDebTools are tools tests ask testdeb for, at the paths Debian
// installs them: the PATH without git links to them even while they are
// missing, so that testdeb finds them once it has installed them.
var testDebTools = []string{"/usr/sbin/sshd", "/usr/bin/ssh-keygen"}

// TestMain runs the tests with PATH set to a directory that links to
// every program of the original PATH except git's (git, git-upload-pack,
// git-remote-http, ...), and fails when git can still be found.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fixturePath = os.Getenv("PATH")
	var err error
	if gitBin, err = exec.LookPath("git"); err != nil {
		fmt.Fprintln(os.Stderr, "git (Debian's git package) is needed to make the test repositories:", err)
		return 1
	}
	if gitBin, err = filepath.Abs(gitBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin, err := os.MkdirTemp("", "changesource-nogit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(bin)
	link := func(target string) {
		name := filepath.Base(target)
		if name == "git" || strings.HasPrefix(name, "git-") {
			return
		}
		// The first of PATH wins, as for a lookup.
		_ = os.Symlink(target, filepath.Join(bin, name))
	}
	for _, dir := range filepath.SplitList(fixturePath) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			link(filepath.Join(dir, e.Name()))
		}
	}
	for _, tool := range testDebTools {
		link(tool)
	}
	os.Setenv("PATH", bin)
	if p, err := exec.LookPath("git"); err == nil {
		fmt.Fprintln(os.Stderr, "the PATH without git still finds", p)
		return 1
	}
	return m.Run()
}

// fixtureEnv is the environment of the commands that make fixtures: the
// original PATH, with git in it.
func fixtureEnv() []string {
	return append(os.Environ(), "PATH="+fixturePath)
}
