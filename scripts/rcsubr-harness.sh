#!/bin/sh
# rcsubr-harness.sh RC_SUBR DEFAULTS_RC_CONF
#
# Runs deploy/freebsd/rc.d/gbb_master and gbb_worker, as shipped, under
# FreeBSD's own rc.subr on Linux: start, status, reload with a good and a
# bad config, restart with a bad config, reopenlogs, cleanstop, stop, and
# the worker's start without and with worker.toml, restart and stop. It
# prints each command and what it printed, and fails when one of them does
# not do what the guide says.
#
# RC_SUBR and DEFAULTS_RC_CONF are FreeBSD's libexec/rc/rc.subr and
# libexec/rc/rc.conf (installed as /etc/rc.subr and /etc/defaults/rc.conf),
# taken from a FreeBSD system or source tree. They are not in this
# repository (BSD-licensed code of another project), so this script is not
# part of make test; run it by hand, as root, from the repository's root:
#
#   sh scripts/rcsubr-harness.sh /path/to/rc.subr /path/to/defaults/rc.conf
#
# It needs root (a private mount namespace with unshare(1), setpriv(1)), a
# POSIX /bin/sh (dash), tcsh, Go, and python3 for a free port. Inside the
# namespace it binds over /etc a copy of this host's /etc with rc.subr,
# defaults/rc.conf, an rc.conf and a user gbb (uid 8010) added; over
# /usr/local/bin a directory with the freshly built gbb-master and
# gbb-worker (the scripts' defaults); over /usr/local/etc a directory with
# rc.d/gbb_master and gbb_worker (the flavours' newsyslog commands run
# them); and over ps the stub below. Stubs, first in PATH, stand in for
# FreeBSD's limits(1), su(1) (su -m USER -c CMD runs CMD as USER with
# setpriv and tcsh, root's shell on FreeBSD 13, keeping the environment),
# stat -f %Sp, pwait(1), kenv(1) (no loader variables) and ps -o jid.
# Nothing outside the namespace and the temp dir changes.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 RC_SUBR DEFAULTS_RC_CONF" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "$0: run as root (it needs a mount namespace)" >&2
	exit 2
fi
for t in unshare setpriv python3 go tcsh; do
	command -v "$t" >/dev/null || { echo "$0: $t missing" >&2; exit 2; }
done
[ -f deploy/freebsd/rc.d/gbb_master ] || { echo "$0: run from the repository's root" >&2; exit 2; }

if [ "${GBB_RC_INNER:-}" != 1 ]; then
	W=$(mktemp -d /tmp/gbb-rcsubr.XXXXXX)
	chmod 755 "$W"
	mkdir -p "$W/etc/defaults" "$W/stub" "$W/usr/local/bin" "$W/usr/local/etc/rc.d" "$W/var/db/gbb" "$W/b" "$W/real"
	cp -a /etc/. "$W/etc/"
	cp "$1" "$W/etc/rc.subr"
	cp "$2" "$W/etc/defaults/rc.conf"
	echo "gbb:x:8010:8010:gbb:/nonexistent:/usr/sbin/nologin" >>"$W/etc/passwd"
	echo "gbb:x:8010:" >>"$W/etc/group"
	CGO_ENABLED=0 go build -o "$W/usr/local/bin/gbb-master" ./cmd/master
	CGO_ENABLED=0 go build -o "$W/usr/local/bin/gbb-worker" ./cmd/worker
	# Where the flavours' newsyslog commands find the rc.d scripts.
	cp deploy/freebsd/rc.d/gbb_master deploy/freebsd/rc.d/gbb_worker "$W/usr/local/etc/rc.d/"
	chown 8010:8010 "$W/var/db/gbb" "$W/b"
	chmod 750 "$W/var/db/gbb" "$W/b"
	cp "$(command -v ps)" "$W/realps"

	# The stubs.
	cat >"$W/stub/limits" <<'EOF'
#!/bin/sh
# limits -C CLASS [limits...] COMMAND...: the login class's limits are not
# applied here; run the command.
[ "$1" = -C ] && shift 2
exec "$@"
EOF
	cat >"$W/stub/su" <<'EOF'
#!/bin/sh
# su -m USER -c CMD: CMD as USER, with the environment kept, run by the
# caller's shell (su -m keeps it): root's csh on FreeBSD 13.
[ "$1" = -m ] || { echo "su stub: expected -m, got $*" >&2; exit 1; }
[ "$3" = -c ] || { echo "su stub: expected -c, got $*" >&2; exit 1; }
exec setpriv --reuid="$2" --regid="$2" --init-groups /usr/bin/tcsh -f -c "$4"
EOF
	cat >"$W/stub/stat" <<'EOF'
#!/bin/sh
# FreeBSD's stat -f %Sp FILE (the mode as ls shows it).
if [ "$1" = -f ] && [ "$2" = %Sp ]; then
	exec /usr/bin/stat -c %A "$3"
fi
exec /usr/bin/stat "$@"
EOF
	cat >"$W/stub/kenv" <<'EOF'
#!/bin/sh
# kenv -q NAME: no loader environment here.
exit 1
EOF
	cat >"$W/stub/pwait" <<'EOF'
#!/bin/sh
# pwait PID...: wait until they are gone.
for p in "$@"; do
	while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
done
EOF
	cat >"$W/stub/ps" <<EOF
#!/bin/sh
# FreeBSD's ps -ww -o pid= -o jid= -o command= (-p PID | -ax), as rc.subr
# runs it: jid 0 (no jail here).
sel=-e
while [ \$# -gt 0 ]; do
	case "\$1" in
	-p) sel="-p \$2"; shift ;;
	-ax) sel=-e ;;
	esac
	shift
done
$W/realps -ww -o pid= -o args= \$sel | awk '{ p = \$1; \$1 = ""; print p, 0, substr(\$0, 2) }'
EOF
	chmod 755 "$W"/stub/*
	# shellcheck disable=SC2016 # expanded by the inner sh
	GBB_RC_INNER=1 GBB_RC_DIR="$W" unshare -m --propagation private sh -c '
		set -e
		mount --bind "$GBB_RC_DIR/etc" /etc
		mount --bind "$GBB_RC_DIR/usr/local/bin" /usr/local/bin
		mount --bind "$GBB_RC_DIR/usr/local/etc" /usr/local/etc
		mount --bind "$GBB_RC_DIR/stub/ps" "$(command -v ps)"
		exec sh "$0" "$1" "$2"' "$0" "$1" "$2"
	rc=$?
	rm -rf "$W"
	exit $rc
fi

# Inside the namespace.
W=$GBB_RC_DIR
M=$W/var/db/gbb
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >/etc/rc.conf <<EOF
gbb_master_enable="YES"
gbb_master_basedir="$M"
gbb_master_user="gbb"
gbb_worker_enable="YES"
gbb_worker_basedir="$W/b"
gbb_worker_user="gbb"
EOF
good="buildbot_url = \"http://127.0.0.1/\"
[protocols.grpc]
port = $port
interface = \"127.0.0.1\"
[www]
port = 0
interface = \"127.0.0.1\"
[[workers]]
name = \"worker0\"
password = \"pw\"
"
printf '%s' "$good" >"$M/master.toml"
chown 8010:8010 "$M/master.toml"
# It holds a password: 0600, or checkconfig warns.
chmod 600 "$M/master.toml"

fails=0
# svc SCRIPT COMMAND WANT_EXIT WANT_STATUS: runs the script as service(8)
# does, prints what it printed and its exit status, then checks that and
# the exit status of "status" afterwards (0 running, 1 not).
svc() {
	echo "\$ service $1 $2"
	set +e
	env -i HOME=/ PATH="$W/stub:/sbin:/bin:/usr/sbin:/usr/bin" /bin/sh "deploy/freebsd/rc.d/$1" "$2" >"$W/out" 2>&1
	ex=$?
	env -i HOME=/ PATH="$W/stub:/sbin:/bin:/usr/sbin:/usr/bin" /bin/sh "deploy/freebsd/rc.d/$1" status >/dev/null 2>&1
	st=$?
	set -e
	sed 's/^/  | /' "$W/out"
	echo "  (exit $ex; then status exits $st)"
	if [ "$ex" != "$3" ] || [ "$st" != "$4" ]; then
		echo "  FAIL: want exit $3, then status $4"
		fails=$((fails + 1))
	fi
}
pid() { cat "$1" 2>/dev/null || echo none; }

echo "== gbb_master"
svc gbb_master status 1 1
svc gbb_master start 0 0
p1=$(pid "$M/master.pid")
svc gbb_master status 0 0
printf 'title = "changed"\n%s' "$good" >"$M/master.toml"
svc gbb_master reload 0 0
printf 'no_such_key = 1\n%s' "$good" >"$M/master.toml"
svc gbb_master reload 1 0
svc gbb_master restart 1 0
p2=$(pid "$M/master.pid")
if [ "$p1" != "$p2" ]; then
	echo "  FAIL: restart with a bad config replaced the master ($p1 -> $p2)"
	fails=$((fails + 1))
fi
svc gbb_master checkconfig 1 0
printf '%s' "$good" >"$M/master.toml"
svc gbb_master checkconfig 0 0
svc gbb_master restart 0 0
p3=$(pid "$M/master.pid")
[ "$p3" != "$p2" ] || { echo "  FAIL: restart kept pid $p2"; fails=$((fails + 1)); }
mv "$M/master.log" "$M/master.log.0"
svc gbb_master reopenlogs 0 0
# What newsyslog runs (the R flag of the flavour's newsyslog.conf.d line),
# as root from cron, with the signal number as its argument.
newsyslog_cmd() {
	echo "\$ $1 $2 (as newsyslog runs it)"
	set +e
	env -i HOME=/ PATH="$W/stub:/etc:/bin:/sbin:/usr/bin:/usr/sbin" /bin/sh -c "$1 $2" >"$W/out" 2>&1
	ex=$?
	set -e
	sed 's/^/  | /' "$W/out"
	echo "  (exit $ex)"
}
nsl=deploy/freebsd/flavours/gbb-master/usr/local/libexec/gbb_master_reopenlogs
mv "$M/master.log" "$M/master.log.1"
newsyslog_cmd "$nsl" 1
if [ "$ex" != 0 ] || ! grep -q 'log file reopened' "$M/master.log" 2>/dev/null; then
	echo "  FAIL: the newsyslog command did not make the master reopen master.log"
	fails=$((fails + 1))
fi
# A pid file that names another process (the user gbb, whom builds run as,
# owns it): the command must not signal it.
sleep 300 &
victim=$!
cp "$M/master.pid" "$M/master.pid.keep"
echo "$victim" >"$M/master.pid"
newsyslog_cmd "$nsl" 1
mv "$M/master.pid.keep" "$M/master.pid"
if [ "$ex" = 0 ] || ! kill -0 "$victim" 2>/dev/null; then
	echo "  FAIL: with $victim (sleep, root's) in master.pid the newsyslog command succeeded or killed it"
	fails=$((fails + 1))
else
	echo "  (sleep $victim, named in master.pid, still runs)"
fi
kill "$victim"
# gbb_master_flags is rc.subr's: start warns and ignores it.
echo 'gbb_master_flags="--nodaemon"' >>/etc/rc.conf
svc gbb_master restart 0 0
sed -i '/^gbb_master_flags=/d' /etc/rc.conf
# shellcheck disable=SC2012 # for the eye: modes and owners
ls -l "$M" | sed 's/^/  | /'

echo "== gbb_worker"
svc gbb_worker start 1 1
setpriv --reuid=gbb --regid=gbb --init-groups /usr/local/bin/gbb-worker create-worker "$W/b" "127.0.0.1:$port" worker0 pw | sed 's/^/  | /'
svc gbb_worker start 0 0
svc gbb_worker status 0 0
# What the builds get: HOME the basedir, PATH with /usr/local/bin (git).
envf=/proc/$(cat "$W/b/worker.pid")/environ
tr '\0' '\n' <"$envf" | grep -E '^(HOME|PATH|USER)=' | sed 's/^/  worker env: /'
if ! tr '\0' '\n' <"$envf" | grep -qx "HOME=$W/b" || ! tr '\0' '\n' <"$envf" | grep -q '^PATH=.*:/usr/local/bin'; then
	echo "  FAIL: the worker's HOME or PATH"
	fails=$((fails + 1))
fi
mv "$W/b/worker.log" "$W/b/worker.log.0"
svc gbb_worker reopenlogs 0 0
mv "$W/b/worker.log" "$W/b/worker.log.1"
newsyslog_cmd deploy/freebsd/flavours/gbb-worker/usr/local/libexec/gbb_worker_reopenlogs 1
if [ "$ex" != 0 ] || ! grep -q 'log file reopened' "$W/b/worker.log" 2>/dev/null; then
	echo "  FAIL: the newsyslog command did not make the worker reopen worker.log"
	fails=$((fails + 1))
fi
svc gbb_worker restart 0 0
svc gbb_worker stop 0 1
# shellcheck disable=SC2012
ls -l "$W/b" | sed 's/^/  | /'
echo "  worker.log:"
sed 's/^/  | /' "$W/b/worker.log"

echo "== gbb_master, to the end"
svc gbb_master cleanstop 0 1
svc gbb_master start 0 0
svc gbb_master stop 0 1
# /usr/local/bin/gbb-master as a symlink (to a binary elsewhere): rc.subr
# finds the daemon by its argv[0], which must stay the symlink's path.
mv /usr/local/bin/gbb-master "$W/real/gbb-master"
ln -s "$W/real/gbb-master" /usr/local/bin/gbb-master
echo "  (/usr/local/bin/gbb-master -> $W/real/gbb-master)"
svc gbb_master start 0 0
svc gbb_master status 0 0
svc gbb_master start 1 0
svc gbb_master stop 0 1
rm /usr/local/bin/gbb-master
mv "$W/real/gbb-master" /usr/local/bin/gbb-master
svc gbb_master stop 1 1
echo "  master.log:"
sed 's/^/  | /' "$M/master.log"

if [ "$fails" -ne 0 ]; then
	echo "$fails FAILED"
	exit 1
fi
echo "all as expected"
