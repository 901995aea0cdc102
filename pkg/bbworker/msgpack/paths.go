package msgpack

import (
	"fmt"
	"strings"
)

// workerPaths joins and expands paths as the worker's OS does, as
// buildbot's master does for msgpack (posixpath or ntpath chosen by the
// "system" of the worker info, and path_expand_user with the worker's
// environment).
type workerPaths struct {
	nt      bool
	environ map[string]any
}

func (w workerPaths) sep() string {
	if w.nt {
		return `\`
	}
	return "/"
}

func (w workerPaths) abs(p string) bool {
	if w.nt {
		return strings.HasPrefix(p, `\`) || strings.HasPrefix(p, "/") ||
			(len(p) >= 2 && p[1] == ':' && (p[0]|0x20) >= 'a' && (p[0]|0x20) <= 'z')
	}
	return strings.HasPrefix(p, "/")
}

// join is posixpath.join (or, on Windows workers, ntpath.join without its
// drive-relative cases): an absolute element starts over.
func (w workerPaths) join(elem ...string) string {
	var out string
	for _, e := range elem {
		switch {
		case w.abs(e) || out == "":
			out = e
		case e == "":
			if !strings.HasSuffix(out, "/") && !(w.nt && strings.HasSuffix(out, `\`)) {
				out += w.sep()
			}
		case strings.HasSuffix(out, "/") || (w.nt && strings.HasSuffix(out, `\`)):
			out += e
		default:
			out += w.sep() + e
		}
	}
	return out
}

// expandUser expands a leading "~" (alone or followed by a separator)
// into the worker's home as its environment names it, as buildbot's
// path_expand_user does; "~user" and a worker without HOME (USERPROFILE on
// Windows) keep the path as it is, since the master cannot know that
// user's home on the worker.
func (w workerPaths) expandUser(p string) string {
	if !strings.HasPrefix(p, "~") {
		return p
	}
	rest := p[1:]
	if rest != "" && rest[0] != '/' && !(w.nt && rest[0] == '\\') {
		return p
	}
	home := ""
	if w.nt {
		if h, ok := w.environ["USERPROFILE"].(string); ok {
			home = h
		} else {
			drive, _ := w.environ["HOMEDRIVE"].(string)
			hp, ok := w.environ["HOMEPATH"].(string)
			if !ok {
				return p
			}
			home = drive + hp
		}
	} else {
		h, ok := w.environ["HOME"].(string)
		if !ok {
			return p
		}
		home = strings.TrimSuffix(h, "/")
		if home == "" {
			home = "/"
		}
	}
	return home + rest
}

// str returns args[key] as a string.
func str(args map[string]any, key string) (string, error) {
	v, ok := args[key]
	if !ok {
		return "", fmt.Errorf("argument %q is missing", key)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("argument %q is a %T, not a string", key, v)
	}
	return s, nil
}

// dirs returns args["dir"], a string or a list of strings, as a list.
func dirs(args map[string]any) ([]string, error) {
	switch d := args["dir"].(type) {
	case string:
		return []string{d}, nil
	case []string:
		return d, nil
	case []any:
		out := make([]string, 0, len(d))
		for _, e := range d {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("argument \"dir\" holds a %T, not a string", e)
			}
			out = append(out, s)
		}
		return out, nil
	case nil:
		return nil, fmt.Errorf("argument \"dir\" is missing")
	default:
		return nil, fmt.Errorf("argument \"dir\" is a %T, not a string or list", d)
	}
}

// translate rewrites a remote command's master-side arguments (relative
// to the builder's directory, as the PB worker takes them) into the
// worker-side ones with absolute paths, and renames the transfer
// commands, as buildbot's msgpack Connection.remoteStartCommand does. It
// returns the command name to send; args is a copy the caller owns.
func (w workerPaths) translate(builderDir, name string, args map[string]any) (string, error) {
	var err error
	pathsOf := func() error {
		ds, err := dirs(args)
		if err != nil {
			return err
		}
		paths := make([]any, len(ds))
		for i, d := range ds {
			paths[i] = w.join(builderDir, d)
		}
		args["paths"] = paths
		delete(args, "dir")
		return nil
	}
	transfer := func(key string) error {
		rel, err := str(args, key)
		if err != nil {
			return err
		}
		wd, _ := args["workdir"].(string)
		args["path"] = w.join(builderDir, wd, w.expandUser(rel))
		return nil
	}
	switch name {
	case "mkdir", "rmdir":
		err = pathsOf()
	case "cpdir":
		var from, to string
		if from, err = str(args, "fromdir"); err == nil {
			if to, err = str(args, "todir"); err == nil {
				args["from_path"] = w.join(builderDir, from)
				args["to_path"] = w.join(builderDir, to)
				delete(args, "fromdir")
				delete(args, "todir")
			}
		}
	case "stat":
		var file string
		if file, err = str(args, "file"); err == nil {
			wd, _ := args["workdir"].(string)
			args["path"] = w.join(builderDir, wd, file)
			delete(args, "file")
		}
	case "glob":
		var p string
		if p, err = str(args, "path"); err == nil {
			args["path"] = w.join(builderDir, p)
		}
	case "listdir":
		var d string
		if d, err = str(args, "dir"); err == nil {
			args["path"] = w.join(builderDir, d)
			delete(args, "dir")
		}
	case "rmfile":
		var p string
		if p, err = str(args, "path"); err == nil {
			// buildbot 4.x expands "~" here too; 3.7 does not.
			args["path"] = w.join(builderDir, w.expandUser(p))
		}
	case "shell":
		var wd string
		if wd, err = str(args, "workdir"); err == nil {
			args["workdir"] = w.join(builderDir, wd)
		}
	case "uploadFile", "upload_file":
		name, err = "upload_file", transfer("workersrc")
	case "uploadDirectory", "upload_directory":
		name, err = "upload_directory", transfer("workersrc")
	case "downloadFile", "download_file":
		name, err = "download_file", transfer("workerdest")
	}
	if err != nil {
		return "", fmt.Errorf("command %s: %w", name, err)
	}
	for _, k := range []string{"want_stdout", "want_stderr"} {
		if v, ok := args[k]; ok {
			args[k] = v == true || v == 1 || v == int64(1)
		}
	}
	return name, nil
}
