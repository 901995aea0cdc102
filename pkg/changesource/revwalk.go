package changesource

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// presentCommits returns the revisions of revs that are commits in the
// mirror (git cat-file --batch-check): rev-list's --ignore-missing does not
// cover a full object name the mirror lacks, so such known revisions (seen
// by an older mirror, since force-pushed away) are dropped before the walk.
func presentCommits(ctx context.Context, g gitCmd, revs []string) ([]string, error) {
	if len(revs) == 0 {
		return nil, nil
	}
	var in strings.Builder
	for _, r := range revs {
		in.WriteString(r + "\n")
	}
	g.stdin = strings.NewReader(in.String())
	out, err := g.run(ctx, "cat-file", "--batch-check")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(revs) {
		return nil, fmt.Errorf("git cat-file: %d lines for %d revisions", len(lines), len(revs))
	}
	var present []string
	for i, line := range lines {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "commit" {
			present = append(present, revs[i])
		}
	}
	return present, nil
}

// newCommits returns the commits reachable from tip and from none of known,
// oldest first, parents before children: what
// `git rev-list --date-order --reverse tip --not known...` lists. Every
// revision of known must be a commit in the mirror (see presentCommits).
func newCommits(ctx context.Context, g gitCmd, tip string, known []string) ([]string, error) {
	var in strings.Builder
	in.WriteString(tip + "\n")
	for _, k := range known {
		in.WriteString("^" + k + "\n")
	}
	g.stdin = strings.NewReader(in.String())
	out, err := g.run(ctx, "rev-list", "--date-order", "--reverse", "--stdin")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// commitInfo is what a change tells of a commit.
type commitInfo struct {
	author, committer, message string
	when                       time.Time
	parents                    []string
	files                      []string
}

// logFields is the format of `git log` for commitInfo: fields separated
// by NUL, as each record is with -z.
const logFields = "%H%x00%P%x00%an%x00%ae%x00%cn%x00%ce%x00%ct%x00%B"

const nLogFields = 8

// describeCommits reads what changes tell of revs, in two git commands
// however many there are: git log for the authors and messages, and git
// diff-tree for the files each changes from its first parent (every file
// for a root commit; a rename as both names).
func describeCommits(ctx context.Context, g gitCmd, revs []string) (map[string]*commitInfo, error) {
	infos := make(map[string]*commitInfo, len(revs))
	if len(revs) == 0 {
		return infos, nil
	}
	lg := g
	lg.stdin = strings.NewReader(strings.Join(revs, "\n") + "\n")
	out, err := lg.run(ctx, "-c", "log.showSignature=false", "log", "--no-walk=unsorted", "--stdin", "-z", "--format="+logFields)
	if err != nil {
		return nil, err
	}
	fields := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(fields) != nLogFields*len(revs) {
		return nil, fmt.Errorf("git log: %d fields for %d commits", len(fields), len(revs))
	}
	for i := 0; i < len(fields); i += nLogFields {
		f := fields[i : i+nLogFields]
		secs, err := strconv.ParseInt(f[6], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("git log: commit %s: time %q", f[0], f[6])
		}
		infos[f[0]] = &commitInfo{
			parents:   strings.Fields(f[1]),
			author:    fmt.Sprintf("%s <%s>", f[2], f[3]),
			committer: fmt.Sprintf("%s <%s>", f[4], f[5]),
			when:      time.Unix(secs, 0).UTC(),
			message:   strings.TrimSpace(f[7]),
		}
	}

	// diff-tree against the first parent only; with --always each commit
	// is listed, then the paths it changes.
	var in strings.Builder
	for _, r := range revs {
		ci, ok := infos[r]
		if !ok {
			return nil, fmt.Errorf("git log: no commit %s", r)
		}
		in.WriteString(r)
		if len(ci.parents) > 0 {
			in.WriteString(" " + ci.parents[0])
		}
		in.WriteString("\n")
	}
	dg := g
	dg.stdin = strings.NewReader(in.String())
	out, err = dg.run(ctx, "diff-tree", "--stdin", "-z", "-r", "--root", "--always", "--no-renames", "--name-only")
	if err != nil {
		return nil, err
	}
	tokens := bytes.Split(bytes.TrimSuffix(out, []byte{0}), []byte{0})
	k := 0
	for i, r := range revs {
		if k >= len(tokens) || string(tokens[k]) != r {
			return nil, fmt.Errorf("git diff-tree: commit %s not listed in order", r)
		}
		k++
		ci := infos[r]
		for k < len(tokens) && (i+1 == len(revs) || string(tokens[k]) != revs[i+1]) {
			ci.files = append(ci.files, string(tokens[k]))
			k++
		}
		slices.Sort(ci.files)
	}
	return infos, nil
}
