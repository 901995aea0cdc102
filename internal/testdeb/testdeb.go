package testdeb

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// mu serializes this process's apt-get runs; DPkg::Lock::Timeout waits
// for those of other processes (test binaries run in parallel).
var mu sync.Mutex

// Need returns the path of tool, installing Debian's pkg when it is
// missing. It fails the test when it cannot.
func Need(t testing.TB, tool, pkg string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s is missing and only root can install it: apt-get install %s", tool, pkg)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatalf("%s is missing and there is no apt-get to install %s", tool, pkg)
	}
	t.Logf("%s is missing: installing %s", tool, pkg)
	if err := apt("install", pkg); err != nil {
		if err := apt("update"); err != nil {
			t.Fatal(err)
		}
		if err := apt("install", pkg); err != nil {
			t.Fatal(err)
		}
	}
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("installed %s but %s is still missing: %v", pkg, tool, err)
	}
	return p
}

// Install installs Debian's pkg, for callers that have no testing.TB (a
// TestMain), and says why when it cannot.
func Install(pkg string) error {
	mu.Lock()
	defer mu.Unlock()
	if os.Geteuid() != 0 {
		return fmt.Errorf("only root can install it: apt-get install %s", pkg)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("there is no apt-get to install %s", pkg)
	}
	if err := apt("install", pkg); err != nil {
		if err := apt("update"); err != nil {
			return err
		}
		return apt("install", pkg)
	}
	return nil
}

func apt(args ...string) error {
	cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300", "-y", "-qq"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
