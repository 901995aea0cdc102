// Package bbworker lets buildbot's own workers (buildbot-worker 3.x and
// 4.x, unchanged) build for gbb-master. Two wire protocols carry the same
// conversation: Perspective Broker (subpackage pb, buildbot's default) and
// msgpack over WebSocket (subpackage msgpack, buildbot's
// msgpack_experimental_v7). Each gives the master a Conn, the counterpart
// of buildbot's master-side protocols/base.py Connection; the rest of
// this package turns gbb's commands into buildbot remote commands on it.
package bbworker
