package testbin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestFlags: the flags are the Makefile's, -race with the race detector.
func TestFlags(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	flags, err := Flags(root, "v9")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(flags, " ")
	for _, want := range []string{"-trimpath", "-tags grpcnotrace", "-X main.version=v9"} {
		if !strings.Contains(got, want) {
			t.Errorf("flags %q lack %q", got, want)
		}
	}
	if slices.Contains(flags, "-race") != Race {
		t.Errorf("flags %q: -race should be there exactly when the tests run with it (%v)", got, Race)
	}
	if strings.Contains(got, "$(") {
		t.Errorf("flags %q keep a make variable", got)
	}
}

const racy = `package main

import "fmt"

func main() {
	n := 0
	done := make(chan bool)
	go func() { n++; done <- true }()
	n++
	<-done
	fmt.Println(n)
}
`

// TestRaces: a process built with -race that inherits Setenv's GORACE
// writes its report where New finds it, once, and exits 66.
func TestRaces(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "racy.go")
	if err := os.WriteFile(src, []byte(racy), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "racy")
	build := exec.Command("go", "build", "-race", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=1", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	races := NewRaces(filepath.Join(dir, "reports"))
	if err := os.Mkdir(filepath.Join(dir, "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GORACE", "") // restored at the end of the test
	if err := races.Setenv(); err != nil {
		t.Fatal(err)
	}
	if got := races.New(); got != nil {
		t.Fatalf("reports before any process ran: %q", got)
	}
	err := exec.Command(bin).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 66 {
		t.Errorf("racy process: %v, want exit status 66", err)
	}
	got := races.New()
	if len(got) != 1 || !strings.Contains(got[0], "WARNING: DATA RACE") || !strings.Contains(got[0], "main.main") {
		t.Fatalf("reports %q, want one data race in main.main", got)
	}
	if again := races.New(); again != nil {
		t.Errorf("the report was returned twice: %q", again)
	}
}
