#!/usr/bin/env bash
# make demo: a master and a worker on loopback building a small sample project
# (a local git repository made here, so no network is needed). Ctrl-C stops
# both. GBB_DEMO_DIR keeps the basedirs somewhere else than a temp dir;
# GBB_DEMO_WEB_PORT and GBB_DEMO_WORKER_PORT move the ports; GBB_DEMO_BIN
# runs binaries built elsewhere (the e2e test's).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GBB_DEMO_BIN:-$PWD/bin}
dir=${GBB_DEMO_DIR:-$(mktemp -d /tmp/gbb-demo.XXXXXX)}
web_port=${GBB_DEMO_WEB_PORT:-8010}
worker_port=${GBB_DEMO_WORKER_PORT:-9989}
mkdir -p "$dir"

# The sample project: a git repository with a test script.
repo=$dir/hello-world
if [ ! -d "$repo/.git" ]; then
  mkdir -p "$repo"
  cat > "$repo/test.sh" <<'SH'
#!/bin/sh
echo "testing hello..."
[ "$(cat hello.txt)" = "hello, world" ] && echo "PASS: hello" || { echo "FAIL: hello" >&2; exit 1; }
SH
  echo "hello, world" > "$repo/hello.txt"
  git -C "$repo" init -q -b master
  # The commit command printed below works on a machine with no git identity.
  git -C "$repo" config user.name demo
  git -C "$repo" config user.email demo@localhost
  git -C "$repo" add .
  git -C "$repo" commit -qm "hello world"
fi

master=$dir/master
"$bin/gbb-master" create-master "$master" >/dev/null
cat > "$master/master.toml" <<TOML
title = "gbb demo"
title_url = "http://127.0.0.1:$web_port/"
buildbot_url = "http://127.0.0.1:$web_port/"

[protocols.grpc]
port = $worker_port
interface = "127.0.0.1"

[www]
port = $web_port
interface = "127.0.0.1"

[[workers]]
name = "demo-worker"
password = "demo-pass"

[[change_source]]
type = "git_poller"
repourl = "$repo"
branches = ["master"]
poll_interval = "5s"

[[schedulers]]
type = "single_branch"
name = "all"
branch = "master"
builder_names = ["runtests"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

[[builders]]
name = "runtests"
worker_names = ["demo-worker"]

  [[builders.steps]]
  type = "git"
  repourl = "$repo"
  mode = "incremental"

  [[builders.steps]]
  type = "shell"
  name = "test"
  command = ["sh", "./test.sh"]
TOML
"$bin/gbb-master" checkconfig "$master"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped; basedirs kept in $dir"
}
trap cleanup INT TERM EXIT

"$bin/gbb-master" start --nodaemon "$master" 2>"$dir/master.stderr" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$web_port/api/v2/builders" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$dir/master.stderr"; exit 1; }
  sleep 0.1
done
"$bin/gbb-worker" -master "127.0.0.1:$worker_port" -name demo-worker -password demo-pass \
  -basedir "$dir/worker" 2>"$dir/worker.stderr" &
pids+=($!)

# One forced build, so that the UI has something to show.
curl -fs -X POST "http://127.0.0.1:$web_port/api/v2/forceschedulers/force" \
  -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":1,"reason":"demo","owner":"demo <demo@localhost>"}}' >/dev/null

cat <<MSG

gbb demo is running (basedirs in $dir)
  UI:       http://127.0.0.1:$web_port/
  API:      http://127.0.0.1:$web_port/api/v2/builds?order=-buildid&limit=1
  force:    curl -X POST http://127.0.0.1:$web_port/api/v2/forceschedulers/force \\
              -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":1,"reason":"try"}}'
  commit:   git -C $repo commit --allow-empty -m try   (the poller builds it within 5s)
  logs:     $master/master.log, $dir/worker.stderr
Press Ctrl-C to stop.
MSG
wait "${pids[@]}"
