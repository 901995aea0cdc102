package msgpack

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTranslate(t *testing.T) {
	t.Parallel()
	posix := workerPaths{environ: map[string]any{"HOME": "/home/bb"}}
	nt := workerPaths{nt: true, environ: map[string]any{"USERPROFILE": `C:\Users\bb`}}
	for _, tc := range []struct {
		name     string
		paths    workerPaths
		dir      string
		command  string
		args     map[string]any
		wantName string
		want     map[string]any
	}{
		{"shell", posix, "/w/b1", "shell", map[string]any{"workdir": "build", "want_stdout": 1, "want_stderr": int64(0)},
			"shell", map[string]any{"workdir": "/w/b1/build", "want_stdout": true, "want_stderr": false}},
		{"shell absolute workdir", posix, "/w/b1", "shell", map[string]any{"workdir": "/tmp/x"},
			"shell", map[string]any{"workdir": "/tmp/x"}},
		{"upload with ~", posix, "/w/b1", "uploadFile", map[string]any{"workdir": "build", "workersrc": "~/out.txt"},
			"upload_file", map[string]any{"workdir": "build", "workersrc": "~/out.txt", "path": "/home/bb/out.txt"}},
		{"download", posix, "/w/b1", "downloadFile", map[string]any{"workdir": "build", "workerdest": "sub/in"},
			"download_file", map[string]any{"workdir": "build", "workerdest": "sub/in", "path": "/w/b1/build/sub/in"}},
		{"upload directory", posix, "/w/b1", "uploadDirectory", map[string]any{"workdir": "build", "workersrc": "dist"},
			"upload_directory", map[string]any{"workdir": "build", "workersrc": "dist", "path": "/w/b1/build/dist"}},
		{"mkdir list", posix, "/w/b1", "mkdir", map[string]any{"dir": []any{"a", "b"}},
			"mkdir", map[string]any{"paths": []any{"/w/b1/a", "/w/b1/b"}}},
		{"rmdir", posix, "/w/b1", "rmdir", map[string]any{"dir": "build", "timeout": 120},
			"rmdir", map[string]any{"paths": []any{"/w/b1/build"}, "timeout": 120}},
		{"rmfile with ~ (4.x)", posix, "/w/b1", "rmfile", map[string]any{"path": "~/x"},
			"rmfile", map[string]any{"path": "/home/bb/x"}},
		{"stat", posix, "/w/b1", "stat", map[string]any{"file": "f", "workdir": "build"},
			"stat", map[string]any{"path": "/w/b1/build/f", "workdir": "build"}},
		{"cpdir", posix, "/w/b1", "cpdir", map[string]any{"fromdir": "a", "todir": "b"},
			"cpdir", map[string]any{"from_path": "/w/b1/a", "to_path": "/w/b1/b"}},
		{"listdir", posix, "/w/b1", "listdir", map[string]any{"dir": "build"},
			"listdir", map[string]any{"path": "/w/b1/build"}},
		{"glob", posix, "/w/b1", "glob", map[string]any{"path": "build/*.o"},
			"glob", map[string]any{"path": "/w/b1/build/*.o"}},
		{"windows shell", nt, `C:\bb\b1`, "shell", map[string]any{"workdir": "build"},
			"shell", map[string]any{"workdir": `C:\bb\b1\build`}},
		{"windows upload with ~", nt, `C:\bb\b1`, "uploadFile", map[string]any{"workdir": "build", "workersrc": `~\out.txt`},
			"upload_file", map[string]any{"workdir": "build", "workersrc": `~\out.txt`, "path": `C:\Users\bb\out.txt`}},
		{"windows absolute", nt, `C:\bb\b1`, "downloadFile", map[string]any{"workdir": "build", "workerdest": `D:\x`},
			"download_file", map[string]any{"workdir": "build", "workerdest": `D:\x`, "path": `D:\x`}},
	} {
		name, err := tc.paths.translate(tc.dir, tc.command, tc.args)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if name != tc.wantName {
			t.Errorf("%s: name %q, want %q", tc.name, name, tc.wantName)
		}
		if d := cmp.Diff(tc.want, tc.args); d != "" {
			t.Errorf("%s: args (-want +got):\n%s", tc.name, d)
		}
	}
	if _, err := posix.translate("/w", "shell", map[string]any{}); err == nil {
		t.Errorf("a shell command without workdir was translated")
	}
	if _, err := posix.translate("/w", "mkdir", map[string]any{"dir": 3}); err == nil {
		t.Errorf("mkdir of a number was translated")
	}
}
