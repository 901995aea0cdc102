package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const transferHead = `[[workers]]
name = "w"
password = "p"
[[builders]]
name = "b"
worker_names = ["w"]
`

func TestShellOptions(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", transferHead+`
  [[builders.steps]]
  type = "shell"
  command = "make"
  want_stdout = false
  want_stderr = true
  interrupt_signal = "SIGINT"
  sigterm_time = "3s"
  max_time = "1h"
  logfiles = { test = "build/test.log" }
  decode_rc = { "0" = "success", "1" = "WARNINGS", "2" = "failure" }
`)
	s := cfg.Builders[0].Steps[0]
	type opts struct {
		DropStdout, DropStderr bool
		Signal                 string
		Sigterm, MaxTime       string
		Logfiles               map[string]string
		DecodeRC               map[int]string
	}
	got := opts{s.DropStdout, s.DropStderr, s.InterruptSignal, s.SigtermTime.String(), s.MaxTime.String(), s.Logfiles, s.DecodeRC}
	want := opts{true, false, "INT", "3s", "1h0m0s", map[string]string{"test": "build/test.log"}, map[int]string{0: "success", 1: "warnings", 2: "failure"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shell options (-want +got):\n%s", diff)
	}
}

func TestWorkerSteps(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", transferHead+`
  [[builders.steps]]
  type = "mkdir"
  dir = "build/out"
  [[builders.steps]]
  type = "rmdir"
  dir = "build/out"
  [[builders.steps]]
  type = "remove_file"
  path = "build/x.o"
  [[builders.steps]]
  type = "file_upload"
  workersrc = "a.out"
  masterdest = "artifacts/a.out"
  max_size = 1000
  mode = 0o755
  [[builders.steps]]
  type = "directory_upload"
  workersrc = "dist"
  masterdest = "artifacts/dist"
  [[builders.steps]]
  type = "file_download"
  mastersrc = "artifacts/a.out"
  workerdest = "b.out"
  mode = "0640"
  blocksize = 1000000
  [[builders.steps]]
  type = "string_download"
  s = "hello\n"
  workerdest = "hello.txt"
`)
	type ws struct {
		Type, Name, Dir, Path, WSrc, WDest, MSrc, MDest, S string
		Max                                                int64
		Mode, Block                                        int
	}
	var got []ws
	for _, s := range cfg.Builders[0].Steps {
		got = append(got, ws{s.Type, s.Name, s.Dir, s.Path, s.WorkerSrc, s.WorkerDest, s.MasterSrc, s.MasterDest, s.Content, s.MaxSize, s.FileMode, s.BlockSize})
	}
	want := []ws{
		{Type: "mkdir", Name: "mkdir", Dir: "build/out", Block: MaxBlockSize},
		{Type: "rmdir", Name: "rmdir", Dir: "build/out", Block: MaxBlockSize},
		{Type: "remove_file", Name: "remove_file", Path: "build/x.o", Block: MaxBlockSize},
		{Type: "file_upload", Name: "file_upload", WSrc: "a.out", MDest: "artifacts/a.out", Max: 1000, Mode: 0o755, Block: MaxBlockSize},
		{Type: "directory_upload", Name: "directory_upload", WSrc: "dist", MDest: "artifacts/dist", Block: MaxBlockSize},
		{Type: "file_download", Name: "file_download", MSrc: "artifacts/a.out", WDest: "b.out", Mode: 0o640, Block: MaxBlockSize},
		{Type: "string_download", Name: "string_download", WDest: "hello.txt", S: "hello\n", Block: MaxBlockSize},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("worker steps (-want +got):\n%s", diff)
	}
}

func TestWorkerStepErrors(t *testing.T) {
	t.Parallel()
	_, err := Parse("master.toml", []byte(transferHead+`
  [[builders.steps]]
  type = "mkdir"
  dir = "../elsewhere"
  [[builders.steps]]
  type = "rmdir"
  dir = "."
  [[builders.steps]]
  type = "file_upload"
  workersrc = "/etc/passwd"
  masterdest = "x"
  command = "ls"
  mode = "rwx"
  [[builders.steps]]
  type = "string_download"
  workerdest = "x"
  max_size = -1
  [[builders.steps]]
  type = "shell"
  command = "make"
  interrupt_signal = "STOP"
  decode_rc = { "one" = "success", "2" = "great" }
  logfiles = { stdio = "x", up = "../x" }
  dir = "x"
`))
	if err == nil {
		t.Fatal("Parse accepted bad worker steps")
	}
	for _, want := range []string{
		`steps[0].dir: path "../elsewhere" is absolute or leaves its directory`,
		`steps[1].dir: would remove the builder's directory itself`,
		`steps[2].workersrc: path "/etc/passwd" is absolute or leaves its directory`,
		`steps[2].command: not allowed in a file_upload step`,
		`steps[2].mode: "rwx" is not an octal file mode`,
		`steps[3].s: required for a string_download step`,
		`steps[3].max_size: not allowed in a string_download step`,
		`steps[4].interrupt_signal: unknown signal "STOP"`,
		`steps[4].decode_rc.one: exit code "one" is not an integer`,
		`steps[4].decode_rc.2: unknown result "great"`,
		`steps[4].logfiles.stdio: a logfile cannot be named stdio`,
		`steps[4].logfiles.up: path "../x" is absolute or leaves the workdir`,
		`steps[4].dir: unknown key`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
