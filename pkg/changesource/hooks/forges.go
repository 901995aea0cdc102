package hooks

import (
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"

	"github.com/gbb-ci/gbb/pkg/store"
)

// The forge dialects follow buildbot's github and gitlab hooks and the
// buildbot-gitea plugin: the same change fields, categories and properties,
// so that change filters written for buildbot match the same changes.

// githubHook reads GitHub's push, pull_request and ping events.
func githubHook(req hookRequest) ([]store.Change, string, error) {
	if req.secret != "" {
		var err error
		switch {
		case req.header.Get("X-Hub-Signature-256") != "":
			err = checkHMAC(sha256.New, req.secret, req.body, req.header.Get("X-Hub-Signature-256"), "sha256=", "X-Hub-Signature-256")
		case req.header.Get("X-Hub-Signature") != "":
			err = checkHMAC(sha1.New, req.secret, req.body, req.header.Get("X-Hub-Signature"), "sha1=", "X-Hub-Signature")
		default:
			err = forbidden("missing X-Hub-Signature-256")
		}
		if err != nil {
			return nil, "", err
		}
	}
	payload := req.body
	switch mt := mediaType(req.header); mt {
	case "application/json":
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(req.body))
		if err != nil || !vals.Has("payload") {
			return nil, "", badHook("a form must carry the JSON in its payload field")
		}
		payload = []byte(vals.Get("payload"))
	default:
		return nil, "", badHook("unsupported Content-Type %q", mt)
	}
	event := req.header.Get("X-GitHub-Event")
	switch event {
	case "":
		return nil, "", badHook("missing X-GitHub-Event header")
	case "ping":
		var p struct{}
		if err := decodePayload(payload, &p); err != nil {
			return nil, "", err
		}
		return nil, "ping", nil
	case "push":
		return githubPush(payload)
	case "pull_request":
		return githubPullRequest(payload)
	}
	return nil, fmt.Sprintf("event %q is not handled", event), nil
}

type githubRepo struct {
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	HTMLURL  string `json:"html_url"`
	CloneURL string `json:"clone_url"`
}

func githubPush(payload []byte) ([]store.Change, string, error) {
	var p struct {
		Ref        string      `json:"ref"`
		After      string      `json:"after"`
		Created    bool        `json:"created"`
		Deleted    bool        `json:"deleted"`
		Commits    []gitCommit `json:"commits"`
		HeadCommit *gitCommit  `json:"head_commit"`
		Repository *githubRepo `json:"repository"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	if p.Repository == nil {
		return nil, "", badHook("missing repository")
	}
	return push{
		ref: p.Ref, after: p.After, deleted: p.Deleted, commits: p.Commits,
		repository: p.Repository.HTMLURL, project: p.Repository.FullName,
		tagCategory: "tag",
		props:       store.Properties{"event": prop("push")},
		github:      true, created: p.Created, head: p.HeadCommit,
	}.changes()
}

type githubRef struct {
	Ref  string      `json:"ref"`
	SHA  string      `json:"sha"`
	Repo *githubRepo `json:"repo"`
}

func githubPullRequest(payload []byte) ([]store.Change, string, error) {
	var p struct {
		Action      string                     `json:"action"`
		Number      int64                      `json:"number"`
		Changes     map[string]json.RawMessage `json:"changes"`
		PullRequest *struct {
			Title     string    `json:"title"`
			Body      string    `json:"body"`
			HTMLURL   string    `json:"html_url"`
			CreatedAt string    `json:"created_at"`
			Commits   int64     `json:"commits"`
			Head      githubRef `json:"head"`
			Base      githubRef `json:"base"`
			User      struct {
				Login string `json:"login"`
			} `json:"user"`
			Links struct {
				HTML struct {
					Href string `json:"href"`
				} `json:"html"`
			} `json:"_links"`
		} `json:"pull_request"`
		Repository *githubRepo `json:"repository"`
		Sender     struct {
			Login string `json:"login"`
		} `json:"sender"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	switch {
	case p.PullRequest == nil:
		return nil, "", badHook("missing pull_request")
	case p.Repository == nil:
		return nil, "", badHook("missing repository")
	case p.PullRequest.Head.SHA == "":
		return nil, "", badHook("missing pull_request.head.sha")
	}
	// As buildbot: new code to build comes with these actions, and with an
	// edit that changes the base branch.
	_, baseChanged := p.Changes["base"]
	if !slices.Contains([]string{"opened", "reopened", "synchronize"}, p.Action) && !(p.Action == "edited" && baseChanged) {
		return nil, fmt.Sprintf("pull request #%d %s", p.Number, p.Action), nil
	}
	pr := p.PullRequest
	when, err := parseWhen(pr.CreatedAt, "pull_request.created_at")
	if err != nil {
		return nil, "", err
	}
	plural := "s"
	if pr.Commits == 1 {
		plural = ""
	}
	project := p.Repository.FullName
	if pr.Base.Repo != nil && pr.Base.Repo.FullName != "" {
		project = pr.Base.Repo.FullName
	}
	// As buildbot, the page of the pull request is _links.html.href, the
	// same as html_url.
	revlink := cmp.Or(pr.Links.HTML.Href, pr.HTMLURL)
	props := store.Properties{
		"event":                      prop("pull_request"),
		"pullrequesturl":             prop(revlink),
		"basename":                   prop(pr.Base.Ref),
		"github.number":              prop(p.Number),
		"github.title":               prop(pr.Title),
		"github.html_url":            prop(pr.HTMLURL),
		"github.user.login":          prop(pr.User.Login),
		"github.head.ref":            prop(pr.Head.Ref),
		"github.head.sha":            prop(pr.Head.SHA),
		"github.base.ref":            prop(pr.Base.Ref),
		"github.base.sha":            prop(pr.Base.SHA),
		"github.head.repo.full_name": prop(""),
	}
	if pr.Head.Repo != nil {
		props["github.head.repo.full_name"] = prop(pr.Head.Repo.FullName)
	}
	return []store.Change{{
		Author:     p.Sender.Login,
		Comments:   fmt.Sprintf("GitHub Pull Request #%d (%d commit%s)\n%s\n%s", p.Number, pr.Commits, plural, pr.Title, pr.Body),
		Branch:     fmt.Sprintf("refs/pull/%d/merge", p.Number),
		Revision:   pr.Head.SHA,
		Repository: p.Repository.HTMLURL,
		Project:    project,
		Category:   "pull",
		RevLink:    revlink,
		When:       when,
		Properties: props,
	}}, "", nil
}

// gitlabHook reads GitLab's push, tag push, merge request and note
// (comment) events.
func gitlabHook(req hookRequest) ([]store.Change, string, error) {
	if req.secret != "" {
		if err := checkToken(req.secret, req.header.Get("X-Gitlab-Token"), "X-Gitlab-Token"); err != nil {
			return nil, "", err
		}
	}
	var kind struct {
		ObjectKind string `json:"object_kind"`
	}
	if err := decodePayload(req.body, &kind); err != nil {
		return nil, "", err
	}
	// As buildbot: object_kind, else the header of older GitLabs.
	event := kind.ObjectKind
	if event == "" {
		event = req.header.Get("X-Gitlab-Event")
	}
	switch event {
	case "push", "tag_push", "Push Hook", "Tag Push Hook":
		return gitlabPush(req.body, event)
	case "merge_request", "Merge Request Hook":
		return gitlabMergeRequest(req.body, event)
	case "note", "Note Hook":
		return gitlabNote(req.body, event)
	case "":
		return nil, "", badHook("missing object_kind and X-Gitlab-Event")
	}
	return nil, fmt.Sprintf("event %q is not handled", event), nil
}

func gitlabPush(payload []byte, event string) ([]store.Change, string, error) {
	var p struct {
		Ref        string      `json:"ref"`
		After      string      `json:"after"`
		Commits    []gitCommit `json:"commits"`
		Repository *struct {
			Name string `json:"name"`
			URL  string `json:"url"`
		} `json:"repository"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	if p.Repository == nil {
		return nil, "", badHook("missing repository")
	}
	// As buildbot 3.7: a change per distinct commit listed, so a tag
	// pushed onto an existing commit (no commits listed) makes none.
	return push{
		ref: p.Ref, after: p.After, commits: p.Commits,
		repository: p.Repository.URL, project: p.Repository.Name,
		branchCategory: event, tagCategory: event,
		props: store.Properties{"event": prop(event)},
	}.changes()
}

type gitlabSide struct {
	Name       string `json:"name"`
	GitHTTPURL string `json:"git_http_url"`
	GitSSHURL  string `json:"git_ssh_url"`
}

// gitlabMR is a merge request in GitLab's payloads.
type gitlabMR struct {
	IID             int64           `json:"iid"`
	Title           string          `json:"title"`
	Description     string          `json:"description"`
	State           string          `json:"state"`
	Action          string          `json:"action"`
	OldRev          json.RawMessage `json:"oldrev"` // present, even null, as buildbot's test
	URL             string          `json:"url"`
	SourceBranch    string          `json:"source_branch"`
	TargetBranch    string          `json:"target_branch"`
	SourceProjectID int64           `json:"source_project_id"`
	TargetProjectID int64           `json:"target_project_id"`
	Source          gitlabSide      `json:"source"`
	Target          gitlabSide      `json:"target"`
	LastCommit      *gitCommit      `json:"last_commit"`
}

func gitlabMergeRequest(payload []byte, event string) ([]store.Change, string, error) {
	var p struct {
		Attrs *gitlabMR `json:"object_attributes"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	a := p.Attrs
	if a == nil {
		return nil, "", badHook("missing object_attributes")
	}
	if slices.Contains([]string{"closed", "merged", "approved"}, a.State) {
		return nil, fmt.Sprintf("merge request !%d is %s", a.IID, a.State), nil
	}
	if a.Action != "open" && a.Action != "reopen" && !(a.Action == "update" && a.OldRev != nil) {
		return nil, fmt.Sprintf("merge request !%d: action %q adds no code", a.IID, a.Action), nil
	}
	ch, err := a.change(event, "object_attributes")
	if err != nil {
		return nil, "", err
	}
	return []store.Change{ch}, "", nil
}

// gitlabNote reads a comment: as buildbot's, one on a merge request makes
// a change of the merge request's last commit, with the comment in the
// comments property; one on anything else makes none.
func gitlabNote(payload []byte, event string) ([]store.Change, string, error) {
	var p struct {
		Attrs *struct {
			ID           int64  `json:"id"`
			Note         string `json:"note"`
			NoteableType string `json:"noteable_type"`
		} `json:"object_attributes"`
		MR *gitlabMR `json:"merge_request"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	if p.Attrs == nil {
		return nil, "", badHook("missing object_attributes")
	}
	if p.MR == nil {
		return nil, fmt.Sprintf("note %d is not on a merge request", p.Attrs.ID), nil
	}
	ch, err := p.MR.change(event, "merge_request")
	if err != nil {
		return nil, "", err
	}
	ch.Properties["comments"] = prop(p.Attrs.Note)
	return []store.Change{ch}, "", nil
}

// change is the change of the merge request's last commit; field names
// where the merge request is in the payload, for errors.
func (a *gitlabMR) change(event, field string) (store.Change, error) {
	if a.LastCommit == nil || a.LastCommit.ID == "" {
		return store.Change{}, badHook("missing %s.last_commit.id", field)
	}
	if a.LastCommit.Author == nil {
		return store.Change{}, badHook("missing %s.last_commit.author", field)
	}
	when, err := parseWhen(a.LastCommit.Timestamp, field+".last_commit.timestamp")
	if err != nil {
		return store.Change{}, err
	}
	return store.Change{
		Author:     a.LastCommit.Author.String(),
		Comments:   fmt.Sprintf("MR#%d: %s\n\n%s", a.IID, a.Title, a.Description),
		Branch:     a.TargetBranch,
		Revision:   a.LastCommit.ID,
		Repository: a.Target.GitHTTPURL,
		Project:    a.Target.Name,
		Category:   event,
		RevLink:    a.URL,
		When:       when,
		Properties: store.Properties{
			"event":              prop(event),
			"source_branch":      prop(a.SourceBranch),
			"source_project_id":  prop(a.SourceProjectID),
			"source_repository":  prop(a.Source.GitHTTPURL),
			"source_git_ssh_url": prop(a.Source.GitSSHURL),
			"target_branch":      prop(a.TargetBranch),
			"target_project_id":  prop(a.TargetProjectID),
			"target_repository":  prop(a.Target.GitHTTPURL),
			"target_git_ssh_url": prop(a.Target.GitSSHURL),
		},
	}, nil
}

// giteaHook reads Gitea's (and Forgejo's) push and pull_request events.
func giteaHook(req hookRequest) ([]store.Change, string, error) {
	if req.secret != "" {
		sig := req.header.Get("X-Gitea-Signature")
		if sig == "" {
			return nil, "", forbidden("missing X-Gitea-Signature")
		}
		if err := checkHMAC(sha256.New, req.secret, req.body, sig, "", "X-Gitea-Signature"); err != nil {
			return nil, "", err
		}
	}
	event := req.header.Get("X-Gitea-Event")
	if event == "" {
		event = req.header.Get("X-Gogs-Event")
	}
	switch event {
	case "push":
		return giteaPush(req.body)
	case "pull_request":
		return giteaPullRequest(req.body)
	case "":
		return nil, "", badHook("missing X-Gitea-Event header")
	}
	var p struct{}
	if err := decodePayload(req.body, &p); err != nil {
		return nil, "", err
	}
	return nil, fmt.Sprintf("event %q is not handled", event), nil
}

type giteaRepo struct {
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	CloneURL string `json:"clone_url"`
	SSHURL   string `json:"ssh_url"`
	Owner    struct {
		Username string `json:"username"`
		Login    string `json:"login"`
	} `json:"owner"`
}

func (r *giteaRepo) owner() string { return cmp.Or(r.Owner.Username, r.Owner.Login) }

func giteaPush(payload []byte) ([]store.Change, string, error) {
	var p struct {
		Ref        string      `json:"ref"`
		After      string      `json:"after"`
		Commits    []gitCommit `json:"commits"`
		HeadCommit *gitCommit  `json:"head_commit"`
		Repository *giteaRepo  `json:"repository"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	if p.Repository == nil {
		return nil, "", badHook("missing repository")
	}
	// Gitea lists a push's commits newest first.
	slices.Reverse(p.Commits)
	return push{
		ref: p.Ref, after: p.After, commits: p.Commits, tip: p.HeadCommit,
		repository: p.Repository.SSHURL, project: p.Repository.FullName,
		branchCategory: "push", tagCategory: "push",
		props: store.Properties{
			"event":           prop("push"),
			"repository_name": prop(p.Repository.Name),
			"owner":           prop(p.Repository.owner()),
		},
	}.changes()
}

type giteaRef struct {
	Ref  string     `json:"ref"`
	SHA  string     `json:"sha"`
	Repo *giteaRepo `json:"repo"`
}

func giteaPullRequest(payload []byte) ([]store.Change, string, error) {
	var p struct {
		Action      string `json:"action"`
		Number      int64  `json:"number"`
		PullRequest *struct {
			ID        int64    `json:"id"`
			Number    int64    `json:"number"`
			Title     string   `json:"title"`
			Body      string   `json:"body"`
			HTMLURL   string   `json:"html_url"`
			UpdatedAt string   `json:"updated_at"`
			Merged    bool     `json:"merged"`
			Head      giteaRef `json:"head"`
			Base      giteaRef `json:"base"`
			User      struct {
				FullName string `json:"full_name"`
				Login    string `json:"login"`
				Email    string `json:"email"`
			} `json:"user"`
		} `json:"pull_request"`
		Repository *giteaRepo `json:"repository"`
	}
	if err := decodePayload(payload, &p); err != nil {
		return nil, "", err
	}
	switch {
	case p.PullRequest == nil:
		return nil, "", badHook("missing pull_request")
	case p.Repository == nil:
		return nil, "", badHook("missing repository")
	case p.PullRequest.Head.SHA == "":
		return nil, "", badHook("missing pull_request.head.sha")
	}
	pr := p.PullRequest
	if !slices.Contains([]string{"opened", "synchronized", "reopened", "edited"}, p.Action) {
		return nil, fmt.Sprintf("pull request #%d %s", pr.Number, p.Action), nil
	}
	if pr.Merged {
		return nil, fmt.Sprintf("pull request #%d is merged", pr.Number), nil
	}
	when, err := parseWhen(pr.UpdatedAt, "pull_request.updated_at")
	if err != nil {
		return nil, "", err
	}
	author := (&gitPerson{Name: cmp.Or(pr.User.FullName, pr.User.Login), Email: pr.User.Email}).String()
	props := store.Properties{
		"event":           prop("pull_request"),
		"base_branch":     prop(pr.Base.Ref),
		"base_sha":        prop(pr.Base.SHA),
		"head_branch":     prop(pr.Head.Ref),
		"head_sha":        prop(pr.Head.SHA),
		"pr_id":           prop(pr.ID),
		"pr_number":       prop(pr.Number),
		"repository_name": prop(p.Repository.Name),
		"owner":           prop(p.Repository.owner()),
	}
	if r := pr.Base.Repo; r != nil {
		props["base_repository"], props["base_git_ssh_url"] = prop(r.CloneURL), prop(r.SSHURL)
	}
	if r := pr.Head.Repo; r != nil {
		props["head_repository"], props["head_git_ssh_url"] = prop(r.CloneURL), prop(r.SSHURL)
	}
	return []store.Change{{
		Author:     author,
		Comments:   fmt.Sprintf("PR#%d: %s\n\n%s", pr.Number, pr.Title, pr.Body),
		Branch:     pr.Head.Ref,
		Revision:   pr.Head.SHA,
		Repository: p.Repository.SSHURL,
		Project:    p.Repository.FullName,
		Category:   "pull_request",
		RevLink:    pr.HTMLURL,
		When:       when,
		Properties: props,
	}}, "", nil
}
