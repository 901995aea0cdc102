package reporter

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// chatWebhook posts one message per build to a Slack-compatible incoming
// webhook (Slack, Mattermost, Rocket.Chat, Zulip's Slack endpoint):
// {text, username?, channel?, attachments}.
type chatWebhook struct {
	rc   config.Reporter
	http *http.Client
}

func newChatWebhook(rc config.Reporter, d Deps) (Sender, error) {
	if rc.URL == "" {
		return nil, fmt.Errorf("reporter %s: url is required", rc.Name)
	}
	if err := checkURLTemplate(rc.Name, rc.URL); err != nil {
		return nil, err
	}
	return &chatWebhook{rc: rc, http: d.HTTP}, nil
}

// chatColors are the attachments' colors by result, as Slack's good,
// warning and danger.
var chatColors = map[int]string{
	store.Success: "good", store.Warnings: "warning", store.Failure: "danger",
	store.Exception: "#800080", store.Retry: "#999999", store.Cancelled: "#999999", store.Skipped: "#999999",
}

// chatEscape escapes what Slack's mrkdwn reads as markup.
var chatEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func (c *chatWebhook) Send(ctx context.Context, r *Report) error {
	u, err := renderURL(r, c.rc.URL)
	if err != nil {
		return Permanent(fmt.Errorf("render url: %w", err))
	}
	msg := map[string]any{}
	if c.rc.Username != "" {
		msg["username"] = c.rc.Username
	}
	if c.rc.Channel != "" {
		msg["channel"] = c.rc.Channel
	}
	switch r.Event {
	case WorkerMissing:
		m := r.Missing
		msg["text"] = fmt.Sprintf("Worker %s has been missing since %s", chatEscape.Replace(m.Name), m.LastSeen.Format("2006-01-02 15:04:05 MST"))
	case Started:
		msg["text"] = fmt.Sprintf("Build <%s|%s> started", r.URL, chatEscape.Replace(buildTitle(r)))
	default:
		title := buildTitle(r)
		msg["text"] = fmt.Sprintf("Build <%s|%s> finished: %s", r.URL, chatEscape.Replace(title), ResultName(r.Build.Results))
		fields := []map[string]any{
			{"title": "Result", "value": ResultName(r.Build.Results), "short": true},
			{"title": "Worker", "value": r.Worker, "short": true},
		}
		if r.Buildset.Reason != "" {
			fields = append(fields, map[string]any{"title": "Reason", "value": r.Buildset.Reason, "short": false})
		}
		if len(r.Blamelist) > 0 {
			fields = append(fields, map[string]any{"title": "Blamelist", "value": strings.Join(r.Blamelist, ", "), "short": false})
		}
		msg["attachments"] = []map[string]any{{
			"fallback":   fmt.Sprintf("%s: %s", title, ResultName(r.Build.Results)),
			"color":      chatColors[r.Build.Results],
			"title":      title,
			"title_link": r.URL,
			"text":       r.Build.StateString,
			"fields":     fields,
		}}
	}
	return postJSON(ctx, c.http, u, nil, msg)
}
