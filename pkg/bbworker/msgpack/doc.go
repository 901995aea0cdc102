// Package msgpack serves buildbot's msgpack worker protocol
// (msgpack_experimental_v7) on the master: buildbot-workers log in over a
// WebSocket with HTTP basic auth on the upgrade, and each becomes a
// bbworker.Conn.
//
// The conversation is buildbot 3.7's (master/buildbot/worker/protocols/
// msgpack.py and manager/msgpack.py): every message is one binary frame
// holding a msgpack map; requests carry an op and a seq_number counted by
// their sender, and each is answered by one op "response" with the same
// seq_number. The master translates its builder-relative paths into the
// worker's absolute ones before it starts a command, as buildbot's master
// does for this protocol. buildbot-worker 4.x speaks the same dialect.
package msgpack
