// Package protocol is the one wire protocol between the gbb master and its
// workers: the .proto, its generated code, and the master's and the worker's
// ends of the stream.
//
// Each worker dials the master and keeps one bidirectional gRPC stream
// (Master.Connect in worker.proto). The order of calls is:
//
//  1. The worker sends Hello (protocol Version, name, a nonce, WorkerInfo;
//     never its password).
//  2. The master checks the version (a mismatch ends the stream with
//     FailedPrecondition naming both versions; a protocol-1 worker, which
//     sends its password in the hello, is told to upgrade), logs the
//     worker in (login.go: a Challenge answered by a Proof, an HMAC keyed by
//     a PBKDF2 derivation of its password, over both nonces, its name and the TLS session; or its TLS
//     client certificate), refusing with Unauthenticated ("worker \"x\":
//     wrong name or password", the same for an unknown name), and that no
//     other worker of that name is connected: if one is, it sends that one a
//     Ping; an answer within the keepalive timeout refuses the newcomer
//     (AlreadyExists), silence ends the old connection as a lost worker and
//     the newcomer replaces it (both logged with both addresses). Then it
//     sends Welcome (with its heartbeat interval and timeout) and calls
//     ServerConfig.Attach with a WorkerConn.
//  3. The master starts commands with WorkerConn.Run; many may run at once.
//     The worker runs each with its Executor, sends its output in batches
//     (at most 256 KiB, flushed every 100 ms) and exactly one Complete.
//     Cancelling Run's context sends Interrupt; the worker kills the
//     command's processes and still sends Complete.
//  4. When the stream ends, every Run in flight returns ErrConnectionLost
//     (WorkerConn.Err is ErrMasterStopping when the master shuts down),
//     the worker kills its running commands, and it dials again with
//     jittered exponential backoff.
//  5. Except resumable commands (Command.ResumeKey, see resume.go): a
//     worker with a SpoolStore keeps them running, their output spooled,
//     and lists them in its next Hello (WorkerConn.Kept); the master
//     answers each with WorkerConn.Resume (the output it lacks, the live
//     rest, the Complete) or WorkerConn.Abandon (the worker kills it).
//
// Keepalive pings run both ways, so a dead peer is found in seconds: the
// master's gRPC keepalive finds a dead worker within KeepaliveTime +
// KeepaliveTimeout; the master also sends a Ping every KeepaliveTime on the
// stream, and a worker that hears nothing for the announced interval +
// timeout takes its master for gone and reconnects (gRPC does not let a
// client ping more often than every 10s). A new connection must finish its
// HTTP/2 handshake, and then say hello, within ServerConfig.HelloTimeout;
// anything else on the worker port (garbage, a stalled handshake, a silent
// connection) is dropped and logged with its address. Flow
// control is the stream's own: a slow master blocks the worker's sends, which
// blocks the reading of the command's pipes.
//
// The worker port speaks TLS when ServerConfig.TLS is set (tls.go): the
// worker checks the master's certificate as ClientTLS says (a pinned
// fingerprint, a CA file, the system's roots) and gives up with ErrTLS
// when it cannot verify it before it was ever welcomed.
//
// The generated types (worker.pb.go, worker_grpc.pb.go) are used only inside
// this package; other packages use the hand-written API: Server and
// WorkerConn on the master, Client and Executor on the worker.
package protocol
