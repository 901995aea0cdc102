"""Feed change hook requests to buildbot's own handlers; print their changes.

Run with Debian's /usr/bin/python3, which imports Debian's buildbot package
(3.7). parity_test.go writes a JSON list of requests to stdin:

    [{"dialect": "github", "headers": {"X-GitHub-Event": "push", ...},
      "body": "...", "query": "codebase=x", "secret": "s3cret"}, ...]

and reads a JSON list back, one entry per request:

    {"changes": [change, ...], "error": null}   or   {"changes": [], "error": "..."}

Each change is what buildbot would store: the handler's dict after
ChangeHookResource.submitChanges (when_timestamp as epoch seconds) and
data.changes.addChange's defaults (properties as [value, "Change"], a
missing codebase "", revlink "", repository "", project "", and
db.changes.addChange's when_timestamp in whole seconds).
"""

import io
import json
import sys
import urllib.parse
from datetime import datetime

from buildbot import version
from buildbot.plugins.db import get_plugins
from buildbot.util import datetime2epoch
from buildbot.util import epoch2datetime
from buildbot.www.hooks.base import BaseHookHandler
from buildbot.www.hooks.github import GitHubEventHandler
from buildbot.www.hooks.gitlab import GitLabHandler


def parse_qs(qs):
    args = {}
    for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True):
        args.setdefault(k.encode(), []).append(v.encode())
    return args


class Request:
    """The parts of twisted.web's Request the hooks read."""

    def __init__(self, headers, body, query):
        self.headers = {k.lower().encode(): v.encode() for k, v in headers.items()}
        self.content = io.BytesIO(body.encode())
        self.uri = b"/change_hook"
        # As twisted.web's Request.requestReceived: the query's
        # arguments, then args.update() with a form body's, so that a
        # field in both has the form's values only.
        self.args = parse_qs(query)
        ctype = self.headers.get(b"content-type", b"").split(b";")[0].strip()
        if ctype == b"application/x-www-form-urlencoded":
            self.args.update(parse_qs(body))

    def getHeader(self, name):
        return self.headers.get(name.lower())


class GitHub(GitHubEventHandler):
    """buildbot's GitHub handler, its calls to GitHub's API answered as
    when the API fails (buildbot logs it and goes on): no head commit
    message to check for skip patterns, no list of the PR's files. gbb
    calls no API."""

    def _get_commit_msg(self, repo, sha):
        return "No message field"

    def _get_pr_files(self, repo, number):
        return []


def handler(dialect, secret):
    if dialect == "github":
        # As GitHubHandler with only a secret option: not strict,
        # pullrequest_ref "merge".
        return GitHub(secret, False, master=None, pullrequest_ref="merge").process
    if dialect == "gitlab":
        return GitLabHandler(None, {"secret": secret} if secret else {}).getChanges
    if dialect == "base":
        return BaseHookHandler(None, {}).getChanges
    raise ValueError(f"buildbot {version} has no {dialect} hook in core")


def run(case):
    req = Request(case.get("headers", {}), case.get("body", ""), case.get("query", ""))
    out = {}
    try:
        res = handler(case["dialect"], case.get("secret") or None)(req)
    except Exception as e:  # a handler that fails before its deferred
        return {"changes": [], "error": f"{type(e).__name__}: {e}"}
    if hasattr(res, "addCallbacks"):
        # A secret that is a plain string renders at once, and there is
        # no API: the deferred has fired already.
        res.addCallbacks(lambda r: out.update(result=r),
                         lambda f: out.update(error=f"{f.type.__name__}: {f.getErrorMessage()}"))
        if not out:
            return {"changes": [], "error": "the handler's deferred did not fire"}
    else:
        out["result"] = res
    if "error" in out:
        return {"changes": [], "error": out["error"]}
    changes, _src = out["result"]
    return {"changes": [stored(c) for c in changes], "error": None}


def stored(ch):
    ch = dict(ch)
    when = ch.get("when_timestamp")
    if isinstance(when, datetime):
        when = datetime2epoch(when)  # ChangeHookResource.submitChanges
    if when is not None:
        # data.changes.addChange, then db.changes.addChange: whole seconds
        when = datetime2epoch(epoch2datetime(when))
    ch["when_timestamp"] = when
    ch["properties"] = {k: [v, "Change"] for k, v in (ch.get("properties") or {}).items()}
    ch["codebase"] = ch.get("codebase") or ""
    for k in ("revlink", "repository", "project"):
        if ch.get(k) is None:
            ch[k] = ""
    return ch


def main():
    cases = json.load(sys.stdin)
    json.dump({"version": version,
               "dialects": sorted(get_plugins("webhooks", load_now=False).names),
               "results": [run(c) for c in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
