package config

// Sample is the config `gbb-master create-master` writes as
// master.toml.sample: DESIGN.md's sample, commented the way buildbot's
// master.cfg.sample is. Copy it to master.toml and edit it.
const Sample = `# This is a sample buildmaster config file. It must be installed as
# 'master.toml' in your buildmaster's base directory.
#
# Keys are buildbot's BuildmasterConfig names in snake_case, so a master.cfg
# translates line by line. Unknown keys are errors: run
# 'gbb-master checkconfig DIR' after each change.

####### PROJECT IDENTITY

# the 'title' string will appear at the top of this buildbot installation's
# home pages (linked to the 'title_url').

title = "Hello World CI"
title_url = "https://buildbot.github.io/hello-world/"

# master.log as key=value lines ("text", the default) or one JSON object a
# line ("json") for log shippers; --log-format overrides it.
#log_format = "text"

# the 'buildbot_url' string should point to the location where the buildbot's
# internal web server is visible. This typically uses the port number set in
# the [www] table below, but with an externally-visible host name which the
# buildbot cannot figure out without some help.

buildbot_url = "http://localhost:8010/"

####### RESTARTS

# With 'finish_steps_on_restart', a master that stops cleanly (stop, restart,
# an upgrade) leaves the shell steps it runs to their workers, which finish
# them and keep their output; when it starts again, it waits up to
# 'finish_steps_wait' for each such build's worker and goes on with the same
# build. Off (the default, buildbot's behaviour), a restart ends the running
# builds RETRY and they run again from their first step.

#finish_steps_on_restart = true
#finish_steps_wait = "5m"

####### PROTOCOLS

# 'protocols' contains information about protocols which master will use for
# communicating with workers. 'port' must match the value configured into the
# workers (with their -master option). 'interface' (default: all addresses)
# limits the address it listens on.
#
# The master pings each worker every 'keepalive_interval' and waits
# 'keepalive_timeout' for the answer: a worker that was killed, or whose
# network was cut without a word, is found gone within their sum (its
# builds end RETRY and run again), and its workers find a dead master within
# it too. A new connection must say hello within their sum; when a worker
# connects under the name of one still connected, that one has
# 'keepalive_timeout' to answer a ping, or the newcomer replaces it.
#
# Workers log in by challenge-response: their password never crosses the
# wire. 'tls' encrypts the link: "auto" serves it with the master's own CA,
# which create-master made in worker-tls/ and whose fingerprint it printed;
# each worker pins it (gbb-worker create-worker -tls-fingerprint sha256:...).
# The certificate holds this host's name, localhost and the loopback
# addresses; add the names and addresses workers dial in 'tls_names'. Or
# give 'tls_cert_file' and 'tls_key_file' (a certificate of your own CA, or
# a public one; leave 'tls' out); a reconfig reads new files without
# dropping the connected workers. "off" is for loopback and private links
# (jails on lo1) only. 'client_ca_file' lets workers log in with a client
# certificate whose CN is their name instead of a password.

[protocols.grpc]
port = 9989
tls = "auto"
#tls_names = ["ci.example.org", "192.0.2.10"]
#tls_cert_file = "worker-port.crt"
#tls_key_file = "worker-port.key"
#client_ca_file = "workers-ca.pem"
#keepalive_interval = "10s"     # at least 1s
#keepalive_timeout = "10s"      # at least 1s
# Connection caps (over a cap: closed at once, logged sampled). 0 as
# max_connections (the default) means a quarter of the descriptor limit.
#max_connections = 0
#max_connections_per_address = 64

####### WEB SERVER

# the web UI, the REST API (/api/v2/) and the live event streams.
#
# Behind a reverse proxy, name it in 'trusted_proxies' (IP addresses or CIDR
# prefixes): the client is then the address its X-Forwarded-For names, so
# that the brake on password guessing slows down the guesser, not everyone.

[www]
port = 8010
#trusted_proxies = ["10.1.1.1"]
# max_connections 0 (the default) means a half of the descriptor limit.
# Behind a proxy (nginx) every connection comes from its address: set
# max_connections_per_address = 0 there and let the proxy cap each client.
#max_connections = 0
#max_connections_per_address = 256
#idle_timeout = "60s"           # closes keep-alive connections idle that long
# Prometheus metrics at /metrics (a [[www.authz.rules]] naming the action
# "metrics" restricts them to its roles); /healthz and /readyz are always on.
#metrics = true
# HTTPS (with HTTP/2) without a proxy: a PEM certificate chain and its key,
# relative to this file; "gbb-master reconfig" reloads renewed files. Behind
# nginx, nginx terminates TLS (deploy/freebsd/nginx.conf) and this stays off.
#tls_cert_file = "web.pem"
#tls_key_file = "web-key.pem"

####### DB URL

# This specifies what database buildbot uses to store its state: a bbolt
# file (one master, nothing to set up), or PostgreSQL, which several masters
# with this same config may share (docs/postgresql.md):
#   url = "postgresql://gbb@db.example.org/gbb?sslmode=verify-full"
# With several masters, each records that it is alive every
# heartbeat_interval; one silent for master_timeout is presumed dead and
# its builds run again elsewhere.

[db]
url = "bbolt:state.db"          # relative to the master's basedir
#heartbeat_interval = "5s"
#master_timeout = "60s"

####### WORKERS

# The 'workers' list defines the set of recognized workers. Each element is
# a table with a unique worker name and password. The same worker name and
# password must be configured on the worker. 'max_builds' (default: no limit)
# caps the builds it runs at once.

# "pass" is the tutorial's: checkconfig warns about it. Change it, on the
# master and the worker, to a long random one (openssl rand -base64 24) before
# a worker connects from another host: a recorded login lets a short or
# common password be guessed offline (README, "The worker link").

[[workers]]
name = "example-worker"
password = "pass"               # or password_file = "/usr/local/etc/gbb/example-worker.pass"

####### CHANGESOURCES

# the 'change_source' setting tells the buildmaster how it should find out
# about source code changes. Here we point to the buildbot version of a
# python hello-world project.

[[change_source]]
type = "git_poller"
repourl = "https://github.com/buildbot/hello-world.git"
branches = ["master"]
poll_interval = "300s"

####### SCHEDULERS

# Configure the Schedulers, which decide how to react to incoming changes. In
# this case, just kick off a 'runtests' build.

[[schedulers]]
type = "single_branch"
name = "all"
branch = "master"
tree_stable_timer = "0s"
builder_names = ["runtests"]

# The force scheduler lets you start a build from the web UI.

[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

####### BUILDERS

# The 'builders' list defines the Builders, which tell Buildbot how to perform
# a build: what steps, and which workers can execute them. Note that any
# particular build will only take place on one worker.

[[builders]]
name = "runtests"
worker_names = ["example-worker"]

  # check out the source
  [[builders.steps]]
  type = "git"
  repourl = "https://github.com/buildbot/hello-world.git"
  mode = "incremental"

  # run the tests (note that this will require that 'trial' is installed)
  [[builders.steps]]
  type = "shell"
  command = ["trial", "hello"]
  env = { PYTHONPATH = "." }

####### SECRETS

# %(secret:NAME)s, in reporters and steps, reads NAME from the providers, in
# order. A directory holding one file per secret (buildbot's SecretInAFile),
# that only the master's user may read:
#
# [[secrets_providers]]
# type = "file"
# dirname = "secrets"
#
# or the environment variable GBB_SECRET_NAME:
#
# [[secrets_providers]]
# type = "env"
# prefix = "GBB_SECRET_"

####### REPORTERS

# Reporters tell forges and people what happened to builds (buildbot's
# reporters, in snake_case): a commit status on GitHub for each build of
# runtests, and a mail to the team when a build fails or a problem starts.
# Also: github_comment, gitlab_status, gitea_status, bitbucket_server_status,
# bitbucket_cloud_status, http_status_push and chat_webhook.
#
# [[reporters]]
# type = "github_status"
# token = "%(secret:github_token)s"
# builders = ["runtests"]
#
# [[reporters]]
# type = "mail"
# from_addr = "buildbot@example.org"
# extra_recipients = ["dev@example.org"]
# relay_host = "smtp.example.org"
# use_tls = true
# smtp_user = "buildbot"
# smtp_password = "%(secret:smtp_password)s"
# mode = ["failing", "problem"]
`
