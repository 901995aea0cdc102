package reporter

import (
	"slices"

	"github.com/gbb-ci/gbb/internal/fnmatch"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// expandModes resolves buildbot's shortcuts (generators/utils.py's
// _compute_shortcut_modes): "all" is failing, passing, warnings,
// exception and cancelled; "warnings" alone is failing and warnings.
func expandModes(modes []string) []string {
	if len(modes) == 1 && modes[0] == "warnings" {
		return []string{"failing", "warnings"}
	}
	var out []string
	for _, m := range modes {
		if m == "all" {
			out = append(out, "failing", "passing", "warnings", "exception", "cancelled")
		} else {
			out = append(out, m)
		}
	}
	return out
}

// WantsResult reports whether a reporter with modes wants a report of a
// finished build with results, prev being the builder's previous build
// (nil when none), as buildbot 3.7's is_message_needed_by_results. No
// modes means every build.
func WantsResult(modes []string, results int, prev *store.Build) bool {
	if len(modes) == 0 {
		return true
	}
	ms := expandModes(modes)
	has := func(m string) bool { return slices.Contains(ms, m) }
	switch {
	case has("change") && prev != nil && prev.Results != results:
		return true
	case has("failing") && results == store.Failure:
		return true
	case has("passing") && results == store.Success:
		return true
	case has("problem") && results == store.Failure && prev != nil && prev.Results != store.Failure:
		return true
	case has("warnings") && results == store.Warnings:
		return true
	case has("exception") && results == store.Exception:
		return true
	case has("cancelled") && results == store.Cancelled:
		return true
	}
	return false
}

// matchesFilters reports whether a build of builder on branches passes
// the reporter's builders, tags and branches filters: each non-empty list
// must match (builders and branches as fnmatch globs; tags: any of the
// builder's tags is one of them).
func matchesFilters(rc config.Reporter, builder store.Builder, branches []string) bool {
	if len(rc.Builders) > 0 && !slices.ContainsFunc(rc.Builders, func(p string) bool { return fnmatch.Match(p, builder.Name) }) {
		return false
	}
	if len(rc.Tags) > 0 && !slices.ContainsFunc(rc.Tags, func(t string) bool { return slices.Contains(builder.Tags, t) }) {
		return false
	}
	if len(rc.Branches) > 0 && !slices.ContainsFunc(branches, func(b string) bool {
		return slices.ContainsFunc(rc.Branches, func(p string) bool { return fnmatch.Match(p, b) })
	}) {
		return false
	}
	return true
}

// wants reports whether the reporter rc wants r: its filters, then for a
// Started report its report_start, for a Finished one its modes, and for
// a WorkerMissing one whether it mails missing workers' admins.
func wants(rc config.Reporter, r *Report) bool {
	switch r.Event {
	case WorkerMissing:
		return rc.Type == "mail" && rc.Missing && r.Missing != nil && len(r.Missing.Admins) > 0
	case Started:
		if !rc.ReportStart {
			return false
		}
	case Finished:
		if !rc.IsStatus() && !WantsResult(rc.Mode, r.Build.Results, r.Previous) {
			return false
		}
	default:
		return false
	}
	return matchesFilters(rc, r.Builder, r.branches())
}

// branches are the branches a report's build built: its branch property,
// else its source stamps' branches.
func (r *Report) branches() []string {
	if b, ok := r.Props["branch"].(string); ok && b != "" {
		return []string{b}
	}
	var out []string
	for _, ss := range r.Buildset.SourceStamps {
		if ss.Branch != "" {
			out = append(out, ss.Branch)
		}
	}
	return out
}
