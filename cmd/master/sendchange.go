package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// sendchangeTimeout bounds the whole POST of sendchange.
const sendchangeTimeout = 30 * time.Second

const sendchangeUsage = `usage: gbb-master sendchange [options] [FILE...]

Posts one change to a master's base change hook, as buildbot's sendchange.
The master must enable it with a [www.change_hook.base] table.

options:
  -m, --master URL        the master's web URL (default http://localhost:8010/)
  -a, --auth SECRET       the base hook's secret, sent as a bearer token
  -W, --who AUTHOR        the change's author (required)
  -R, --repository URL    -P, --project NAME    -b, --branch NAME
  -r, --revision REV      -C, --category NAME   -s, --codebase NAME
  -l, --revlink URL
  -c, --comments TEXT     or -F, --logfile FILE (- for stdin)
  -w, --when UNIXTIME     when the change was made (default: now)
  -p, --property NAME:VALUE  a change property; repeatable
`

// properties collects repeated --property NAME:VALUE flags.
type properties map[string]any

func (p properties) String() string { return fmt.Sprint(map[string]any(p)) }

func (p properties) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || name == "" {
		return fmt.Errorf("property %q is not NAME:VALUE", v)
	}
	p[name] = value
	return nil
}

func sendchange(args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), sendchangeTimeout)
	defer cancel()
	return runSendchange(ctx, args, os.Stdin, os.Stdout, http.DefaultClient)
}

// runSendchange parses args, posts the change to the master's base hook
// and prints the id of each change stored, one a line, for scripts.
func runSendchange(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, client *http.Client) error {
	fs := flag.NewFlagSet("sendchange", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		master, auth, logfile, when string
		change                      struct {
			Author     string         `json:"author"`
			Repository string         `json:"repository,omitempty"`
			Project    string         `json:"project,omitempty"`
			Branch     string         `json:"branch,omitempty"`
			Revision   string         `json:"revision,omitempty"`
			Category   string         `json:"category,omitempty"`
			Codebase   string         `json:"codebase,omitempty"`
			RevLink    string         `json:"revlink,omitempty"`
			Comments   string         `json:"comments,omitempty"`
			When       int64          `json:"when_timestamp,omitempty"`
			Files      []string       `json:"files,omitempty"`
			Properties map[string]any `json:"properties,omitempty"`
		}
	)
	props := properties{}
	str := func(p *string, long, short, def string) {
		fs.StringVar(p, long, def, "")
		fs.StringVar(p, short, def, "")
	}
	str(&master, "master", "m", "http://localhost:8010/")
	str(&auth, "auth", "a", "")
	str(&change.Author, "who", "W", "")
	str(&change.Repository, "repository", "R", "")
	str(&change.Project, "project", "P", "")
	str(&change.Branch, "branch", "b", "")
	str(&change.Revision, "revision", "r", "")
	str(&change.Category, "category", "C", "")
	str(&change.Codebase, "codebase", "s", "")
	str(&change.RevLink, "revlink", "l", "")
	str(&change.Comments, "comments", "c", "")
	str(&logfile, "logfile", "F", "")
	str(&when, "when", "w", "")
	fs.Var(props, "property", "")
	fs.Var(props, "p", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, sendchangeUsage)
			return nil
		}
		return &exitError{2, fmt.Errorf("sendchange: %w", err)}
	}
	if change.Author == "" {
		return &exitError{2, errors.New("sendchange: you must give the change's author (--who)")}
	}
	if logfile != "" {
		if change.Comments != "" {
			return &exitError{2, errors.New("sendchange: give --comments or --logfile, not both")}
		}
		var data []byte
		var err error
		if logfile == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(logfile)
		}
		if err != nil {
			return fmt.Errorf("sendchange: read comments: %w", err)
		}
		change.Comments = string(data)
	}
	if when != "" {
		f, err := strconv.ParseFloat(when, 64)
		if err != nil || f <= 0 {
			return &exitError{2, fmt.Errorf("sendchange: --when must be unix seconds, not %q", when)}
		}
		change.When = int64(f)
	}
	change.Files = fs.Args()
	if len(props) > 0 {
		change.Properties = props
	}
	body, err := json.Marshal(change)
	if err != nil {
		return fmt.Errorf("sendchange: %w", err)
	}

	if !strings.Contains(master, "://") {
		master = "http://" + master // buildbot's form: HOST:PORT
	}
	hookURL := strings.TrimSuffix(master, "/") + "/change_hook/base"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hookURL, bytes.NewReader(body))
	if err != nil {
		return &exitError{2, fmt.Errorf("sendchange: bad --master: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("sendchange: %w", err)
	}
	defer resp.Body.Close()
	var reply struct {
		ChangeIDs []int64 `json:"changeids"`
		Error     string  `json:"error"`
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("sendchange: read reply: %w", err)
	}
	if jerr := json.Unmarshal(data, &reply); jerr != nil || resp.StatusCode != http.StatusOK {
		reason := reply.Error
		if reason == "" {
			reason = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("sendchange: %s: %s: %s", hookURL, resp.Status, reason)
	}
	for _, id := range reply.ChangeIDs {
		fmt.Fprintln(stdout, id)
	}
	return nil
}
