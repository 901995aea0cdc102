package msgpack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sync/semaphore"

	"github.com/gbb-ci/gbb/pkg/bbworker"
)

const (
	// maxMessage bounds one message from the worker. The worker's
	// largest are an output batch (buffer_size, 64 KiB of text plus its
	// line offsets and times), a file chunk of the master's blocksize, and
	// a listdir of a builder's directory.
	maxMessage = 16 << 20
	// maxQueued bounds the worker's requests read but not yet handled;
	// past it the connection stops reading (TCP pushes back).
	maxQueued = 256
	// maxQueuedBytes bounds what those requests cost (their bytes and
	// elementCost per value) as PB's queuedLoggedIn does: a count alone
	// let a few 16 MiB frames, queued behind a slow request, take
	// gigabytes. One message never costs more (maxMessage and
	// maxElements*elementCost are below it).
	maxQueuedBytes = 32 << 20
	// writeTimeout bounds one frame's write to a worker that stopped
	// reading.
	writeTimeout = 30 * time.Second
	// maxReadLength bounds one chunk of a download the worker asks for.
	maxReadLength = maxMessage / 2
)

// The worker settings buildbot's master sends before setBuilderList
// (protocols/msgpack.py, _set_worker_settings), except bufferTimeout:
// buildbot's 5 s would hold a step's output back for up to 5 s, and gbb
// shows output within a second (its own workers flush every second).
const (
	newlineRE     = `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`
	maxLineLength = 4096
	bufferSize    = 64 * 1024
	bufferTimeout = 1
)

// ErrClosed is returned by a call on a connection that is gone.
var ErrClosed = errors.New("msgpack: connection to the worker is closed")

// RemoteError is the exception a worker answered a request with.
type RemoteError struct {
	Op      string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("worker: %s: %s", e.Op, e.Message)
}

type response struct {
	result any
	err    error
}

// command is a remote command running on the worker: where its updates
// go, and the transfer objects its upload or download calls.
type command struct {
	sink   bbworker.CommandSink
	writer bbworker.FileWriter
	reader bbworker.FileReader
}

// Conn is one logged-in buildbot-worker speaking msgpack. It implements
// bbworker.Conn; its methods are safe for concurrent use.
type Conn struct {
	name   string
	remote string
	ws     *websocket.Conn
	log    *slog.Logger

	setupIDs atomic.Int64

	wmu sync.Mutex // serializes frame writes (gorilla allows one writer)

	mu          sync.Mutex
	seq         int64                   // guarded by mu; next request's seq_number
	pending     map[int64]chan response // guarded by mu; requests awaiting their response
	commands    map[string]*command     // guarded by mu; running commands by id
	info        map[string]any          // guarded by mu; the worker info, once fetched
	paths       workerPaths             // guarded by mu; set with info
	builderDirs map[string]string       // guarded by mu; builder name -> absolute directory
	closed      bool                    // guarded by mu

	inbox     chan queued         // the worker's requests, in order, for handle
	queue     *semaphore.Weighted // maxQueuedBytes, held by the requests in inbox
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // read and handle
}

var _ bbworker.Conn = (*Conn)(nil)

// queued is a request of the worker's waiting for handle, with what it
// holds of the connection's maxQueuedBytes.
type queued struct {
	msg  map[string]any
	cost int64
}

func newConn(name, remote string, ws *websocket.Conn, log *slog.Logger) *Conn {
	return &Conn{
		name:     name,
		remote:   remote,
		ws:       ws,
		log:      log,
		pending:  make(map[int64]chan response),
		commands: make(map[string]*command),
		inbox:    make(chan queued, maxQueued),
		queue:    semaphore.NewWeighted(maxQueuedBytes),
		done:     make(chan struct{}),
	}
}

// start starts the connection's reader and the handler of the worker's
// requests; Close (or the worker going away) stops them.
func (c *Conn) start() {
	c.wg.Go(c.read)
	c.wg.Go(c.handle)
}

// Name implements bbworker.Conn.
func (c *Conn) Name() string { return c.name }

// Protocol implements bbworker.Conn.
func (c *Conn) Protocol() string { return "msgpack" }

// Remote implements bbworker.Conn.
func (c *Conn) Remote() string { return c.remote }

// Done implements bbworker.Conn.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close implements bbworker.Conn: it drops the connection and fails the
// calls awaiting an answer; then the connection's handler completes every
// command still running with an error wrapping ErrClosed (after the
// updates already received). Close may be called from a sink; it does not
// wait for the handler (the Server does).
func (c *Conn) Close() {
	c.shut()
}

func (c *Conn) shut() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		c.ws.Close()
		for _, ch := range pending {
			ch <- response{err: ErrClosed}
		}
		close(c.done)
	})
}

// wait waits for the connection's goroutines; Server uses it.
func (c *Conn) wait() { c.wg.Wait() }

func (c *Conn) send(msg map[string]any) error {
	data, err := encode(msg)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, data); err != nil {
		c.shut()
		return fmt.Errorf("send to worker %s: %w", c.name, err)
	}
	return nil
}

// call sends one request and waits for its response.
func (c *Conn) call(ctx context.Context, msg map[string]any) (any, error) {
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	seq := c.seq
	c.seq++
	c.pending[seq] = ch
	c.mu.Unlock()
	msg["seq_number"] = seq
	op := msg["op"].(string)
	if err := c.send(msg); err != nil {
		c.forget(seq)
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			var re *RemoteError
			if errors.As(r.err, &re) {
				re.Op = op
			}
			return nil, r.err
		}
		return r.result, nil
	case <-ctx.Done():
		c.forget(seq)
		return nil, fmt.Errorf("%s on worker %s: %w", op, c.name, ctx.Err())
	}
}

func (c *Conn) forget(seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		delete(c.pending, seq)
	}
}

// read reads the worker's frames until the connection fails: responses
// go to their callers, requests to handle, in order.
func (c *Conn) read() {
	defer close(c.inbox)
	defer c.shut()
	// ctx is done when the connection is, for waiting on the queue.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	})
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if !closed {
				c.log.Info("buildbot-worker disconnected", "err", err)
			}
			return
		}
		if typ != websocket.BinaryMessage {
			c.log.Warn("buildbot-worker sent a text frame; ignored")
			continue
		}
		msg, values, err := decodeCounted(data)
		if err != nil {
			c.log.Warn("buildbot-worker sent a bad message; dropping the connection", "err", err)
			return
		}
		op, ok1 := msg["op"].(string)
		seq, ok2 := integer(msg["seq_number"])
		if !ok1 || !ok2 {
			c.log.Warn("buildbot-worker sent a message without op or seq_number; ignored")
			continue
		}
		if op == "response" {
			c.mu.Lock()
			ch := c.pending[seq]
			delete(c.pending, seq)
			c.mu.Unlock()
			if ch == nil {
				c.log.Warn("buildbot-worker answered a request that is not waiting", "seq_number", seq)
				continue
			}
			r := response{result: plain(msg["result"])}
			if _, ok := msg["is_exception"]; ok {
				r = response{err: &RemoteError{Message: fmt.Sprint(plain(msg["result"]))}}
			}
			ch <- r
			continue
		}
		// Wait, reading no more, until the requests before it are
		// handled enough for this one to fit.
		cost := min(int64(len(data))+int64(values)*elementCost, maxQueuedBytes)
		if err := c.queue.Acquire(ctx, cost); err != nil {
			return
		}
		select {
		case c.inbox <- queued{msg: msg, cost: cost}:
		case <-c.done:
			c.queue.Release(cost)
			return
		}
	}
}

// handle answers the worker's requests in the order they came, then
// completes the commands the lost connection leaves running.
func (c *Conn) handle() {
	for q := range c.inbox {
		msg := q.msg
		result, err := c.dispatch(msg)
		c.queue.Release(q.cost)
		out := map[string]any{"op": "response", "seq_number": msg["seq_number"], "result": result}
		if err != nil {
			out["result"] = err.Error()
			out["is_exception"] = true
		}
		if err := c.send(out); err != nil {
			break
		}
	}
	for range c.inbox { // drained once read has stopped
	}
	c.mu.Lock()
	left := c.commands
	c.commands = make(map[string]*command)
	c.mu.Unlock()
	ids := make([]string, 0, len(left))
	for id := range left {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		// A transfer's writer or reader is left to the sink's owner: only
		// the worker closes them (update_upload_file_close, ...), and
		// closing a writer here could keep half a file as a whole one.
		left[id].sink.Complete(fmt.Errorf("command %s: %w", id, ErrClosed))
	}
}

// dispatch handles one request from the worker (buildbot's
// manager/msgpack.py call_* methods) and returns its response's result.
func (c *Conn) dispatch(msg map[string]any) (any, error) {
	op := msg["op"].(string)
	id, _ := msg["command_id"].(string)
	switch op {
	case "update", "complete", "update_upload_file_write", "update_upload_file_utime",
		"update_upload_file_close", "update_upload_directory_write", "update_upload_directory_unpack",
		"update_read_file", "update_read_file_close":
	default:
		return nil, fmt.Errorf("Command %s does not exist.", op)
	}
	if _, ok := msg["command_id"]; !ok {
		return nil, errors.New(`message did not contain obligatory "command_id" key`)
	}
	c.mu.Lock()
	cmd := c.commands[id]
	c.mu.Unlock()
	if cmd == nil {
		return nil, errors.New(`unknown "command_id"`)
	}
	args, hasArgs := msg["args"]
	needArgs := func() error {
		if !hasArgs {
			return errors.New(`message did not contain obligatory "args" key`)
		}
		return nil
	}
	switch op {
	case "update":
		if err := needArgs(); err != nil {
			return nil, err
		}
		ups, err := updates(args)
		if err != nil {
			return nil, err
		}
		cmd.sink.Update(ups)
		return nil, nil
	case "complete":
		if err := needArgs(); err != nil {
			return nil, err
		}
		c.mu.Lock()
		delete(c.commands, id)
		c.mu.Unlock()
		var failure error
		if args != nil {
			failure = errors.New(fmt.Sprint(plain(args)))
		}
		cmd.sink.Complete(failure)
		return nil, nil
	case "update_read_file", "update_read_file_close":
		if cmd.reader == nil {
			return nil, errors.New(`unknown "command_id"`)
		}
		if op == "update_read_file_close" {
			return nil, cmd.reader.Close()
		}
		n, ok := integer(msg["length"])
		if !ok || n < 0 {
			return nil, errors.New(`message did not contain obligatory "length" key`)
		}
		data, err := cmd.reader.Read(int(min(n, maxReadLength)))
		if err != nil {
			return nil, err
		}
		if data == nil {
			data = []byte{}
		}
		return data, nil
	}
	if cmd.writer == nil {
		return nil, errors.New(`unknown "command_id"`)
	}
	switch op {
	case "update_upload_file_write", "update_upload_directory_write":
		if err := needArgs(); err != nil {
			return nil, err
		}
		var data []byte
		switch b := args.(type) {
		case []byte:
			data = b
		case string:
			data = []byte(b)
		default:
			return nil, fmt.Errorf("args is a %T, not bytes", args)
		}
		return nil, cmd.writer.Write(data)
	case "update_upload_file_utime":
		a, ok1 := number(msg["access_time"])
		m, ok2 := number(msg["modified_time"])
		if !ok1 || !ok2 {
			return nil, errors.New(`message did not contain obligatory "access_time" and "modified_time" keys`)
		}
		return nil, cmd.writer.Utime(seconds(a), seconds(m))
	case "update_upload_file_close":
		return nil, cmd.writer.Close()
	default: // update_upload_directory_unpack
		return nil, cmd.writer.Unpack()
	}
}

// truthy is Python's truth of a value the worker sent: create-worker
// writes --delete-leftover-dirs into buildbot.tac as 1, not True.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case uint64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// integer returns an integer the worker sent; msgpack decodes the
// positive ones it encodes as uint8..uint64 into uint64.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case uint64:
		return int64(n), n <= 1<<62
	}
	return 0, false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	return 0, false
}

func seconds(s float64) time.Time {
	sec := int64(s)
	return time.Unix(sec, int64((s-float64(sec))*1e9))
}

// updates turns an update's args, a list of [key, value] pairs, into
// Updates as buildbot's remote_update_msgpack does: stdout, stderr and
// header carry (text, line ends, times) and give their text; log carries
// [logname, (text, ...)] and gives [logname, text].
func updates(args any) ([]bbworker.Update, error) {
	list, ok := args.([]any)
	if !ok {
		return nil, fmt.Errorf("update args is a %T, not a list", args)
	}
	out := make([]bbworker.Update, 0, len(list))
	for _, e := range list {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("update is not a [key, value] pair")
		}
		key, ok := pair[0].(string)
		if !ok {
			if b, isBytes := pair[0].([]byte); isBytes {
				key, ok = string(b), true
			}
		}
		if !ok {
			return nil, fmt.Errorf("update key is a %T, not a string", pair[0])
		}
		value := plain(pair[1])
		switch key {
		case "stdout", "stderr", "header":
			value = text(value)
		case "log":
			l, ok := value.([]any)
			if !ok || len(l) != 2 {
				return nil, fmt.Errorf("update log is not a [logname, data] pair")
			}
			value = []any{l[0], text(l[1])}
		}
		out = append(out, bbworker.Update{Key: key, Value: value})
	}
	return out, nil
}

// text is the text of an output value: the first element of the
// worker's (text, line ends, times), or the value itself when it is
// already text.
func text(v any) any {
	if l, ok := v.([]any); ok && len(l) > 0 {
		return l[0]
	}
	return v
}

// Print implements bbworker.Conn.
func (c *Conn) Print(ctx context.Context, message string) error {
	_, err := c.call(ctx, map[string]any{"op": "print", "message": message})
	return err
}

// Keepalive implements bbworker.Conn.
func (c *Conn) Keepalive(ctx context.Context) error {
	_, err := c.call(ctx, map[string]any{"op": "keepalive"})
	return err
}

// Shutdown implements bbworker.Conn.
func (c *Conn) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, map[string]any{"op": "shutdown"})
	return err
}

// GetWorkerInfo implements bbworker.Conn. The connection keeps the info:
// its basedir, system and environ turn builder-relative paths into the
// worker's.
func (c *Conn) GetWorkerInfo(ctx context.Context) (map[string]any, error) {
	r, err := c.call(ctx, map[string]any{"op": "get_worker_info"})
	if err != nil {
		return nil, err
	}
	info, ok := r.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("get_worker_info on worker %s: a %T, not a dict", c.name, r)
	}
	environ, _ := info["environ"].(map[string]any)
	c.mu.Lock()
	c.info = info
	c.paths = workerPaths{nt: info["system"] == "nt", environ: environ}
	c.mu.Unlock()
	return info, nil
}

// SetBuilderList implements bbworker.Conn as buildbot's msgpack
// Connection.remoteSetBuilderList does: it sends the worker settings,
// lists the worker's basedir, removes the directories no builder uses
// when the worker was created with --delete-leftover-dirs, and makes
// the builders' directories (and info) that are missing. It fetches the
// worker info first if GetWorkerInfo was not called.
func (c *Conn) SetBuilderList(ctx context.Context, builders []bbworker.Builder) ([]string, error) {
	c.mu.Lock()
	info := c.info
	c.mu.Unlock()
	if info == nil {
		var err error
		if info, err = c.GetWorkerInfo(ctx); err != nil {
			return nil, err
		}
	}
	basedir, ok := info["basedir"].(string)
	if !ok {
		return nil, fmt.Errorf("set builder list on worker %s: its info has no basedir", c.name)
	}
	c.mu.Lock()
	paths := c.paths
	c.mu.Unlock()
	if _, err := c.call(ctx, map[string]any{"op": "set_worker_settings", "args": map[string]any{
		"newline_re": newlineRE, "max_line_length": maxLineLength,
		"buffer_timeout": bufferTimeout, "buffer_size": bufferSize,
	}}); err != nil {
		return nil, fmt.Errorf("set worker settings on %s: %w", c.name, err)
	}

	wanted := map[string]bool{"info": true}
	builderDirs := make(map[string]string, len(builders))
	names := make([]string, 0, len(builders))
	for _, b := range builders {
		wanted[b.Dir] = true
		builderDirs[b.Name] = paths.join(basedir, b.Dir)
		names = append(names, b.Name)
	}
	got, err := c.setup(ctx, "listdir", map[string]any{"path": basedir}, "files")
	if err != nil {
		return nil, err
	}
	files, _ := got["files"].([]any)
	missing := make(map[string]bool, len(wanted))
	for d := range wanted {
		missing[d] = true
	}
	var leftovers []any
	for _, f := range files {
		name, _ := f.(string)
		delete(missing, name)
		if name == "" || wanted[name] || !truthy(info["delete_leftover_dirs"]) {
			continue
		}
		p := paths.join(basedir, name)
		st, err := c.setup(ctx, "stat", map[string]any{"path": p}, "stat")
		if err != nil {
			return nil, err
		}
		if s, ok := st["stat"].([]any); ok && len(s) > 0 {
			if mode, ok := s[0].(int64); ok && mode&0o170000 == 0o040000 {
				leftovers = append(leftovers, p)
			}
		}
	}
	if len(leftovers) > 0 {
		c.log.Info("deleting directories no builder uses", "paths", leftovers)
		if _, err := c.setup(ctx, "rmdir", map[string]any{"paths": leftovers}); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		dirs := make([]string, 0, len(missing))
		for d := range missing {
			dirs = append(dirs, d)
		}
		sort.Strings(dirs)
		mk := make([]any, len(dirs))
		for i, d := range dirs {
			mk[i] = paths.join(basedir, d)
		}
		if _, err := c.setup(ctx, "mkdir", map[string]any{"paths": mk}); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	c.builderDirs = builderDirs
	c.mu.Unlock()
	return names, nil
}

// setupSink collects a setup command's updates, as buildbot's
// BasicRemoteCommand: the first value of each key.
type setupSink struct {
	mu      sync.Mutex
	results map[string]any // guarded by mu
	failure error          // guarded by mu
	done    chan struct{}
}

func (s *setupSink) Update(ups []bbworker.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range ups {
		if _, ok := s.results[u.Key]; !ok {
			s.results[u.Key] = u.Value
		}
	}
}

func (s *setupSink) Complete(failure error) {
	s.mu.Lock()
	s.failure = failure
	s.mu.Unlock()
	close(s.done)
}

// setup runs one of the commands that set up the builder directories
// and returns its updates once it completed with rc 0 and the expected
// keys.
func (c *Conn) setup(ctx context.Context, name string, args map[string]any, expect ...string) (map[string]any, error) {
	id := "gbb-setup-" + strconv.FormatInt(c.setupIDs.Add(1), 10)
	s := &setupSink{results: map[string]any{}, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.commands[id] = &command{sink: s}
	c.mu.Unlock()
	fail := func(why string) error {
		return fmt.Errorf("worker %s reconfiguration or connection to master failed: %s: %s", c.name, name, why)
	}
	if _, err := c.call(ctx, map[string]any{"op": "start_command", "command_id": id, "command_name": name, "args": args}); err != nil {
		c.mu.Lock()
		delete(c.commands, id)
		c.mu.Unlock()
		return nil, fail(err.Error())
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.commands, id)
		c.mu.Unlock()
		return nil, fail(ctx.Err().Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != nil {
		return nil, fail(s.failure.Error())
	}
	rc, ok := s.results["rc"]
	if !ok {
		return nil, fail("'rc' did not arrive")
	}
	if rc != int64(0) {
		return nil, fail(fmt.Sprintf("error number %v", rc))
	}
	for _, k := range expect {
		if _, ok := s.results[k]; !ok {
			return nil, fail(fmt.Sprintf("key %q is missing", k))
		}
	}
	return s.results, nil
}

// StartCommand implements bbworker.Conn. The sink's methods run on the
// connection's one goroutine for the worker's requests, in order, as do
// the transfer objects' (so they must not wait for another request of the
// worker); a command still running when the connection goes is completed
// with an error wrapping ErrClosed, its writer or reader not closed.
// Args are the master-side ones
// (paths relative to the builder's directory, "writer"/"reader" holding a
// bbworker.FileWriter or FileReader); the connection translates them as
// buildbot's master does for msgpack. The builder must be in the last
// SetBuilderList.
func (c *Conn) StartCommand(ctx context.Context, sink bbworker.CommandSink, builder, commandID, name string, args map[string]any) error {
	c.mu.Lock()
	dir, ok := c.builderDirs[builder]
	paths := c.paths
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("start %s on worker %s: builder %q was not in its builder list", name, c.name, builder)
	}
	a := make(map[string]any, len(args))
	cmd := &command{sink: sink}
	for k, v := range args {
		switch k {
		case "writer":
			w, ok := v.(bbworker.FileWriter)
			if !ok {
				return fmt.Errorf("start %s on worker %s: writer is a %T, not a bbworker.FileWriter", name, c.name, v)
			}
			cmd.writer = w
		case "reader":
			r, ok := v.(bbworker.FileReader)
			if !ok {
				return fmt.Errorf("start %s on worker %s: reader is a %T, not a bbworker.FileReader", name, c.name, v)
			}
			cmd.reader = r
		default:
			a[k] = v
		}
	}
	wire, err := paths.translate(dir, name, a)
	if err != nil {
		return fmt.Errorf("start on worker %s: %w", c.name, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if _, dup := c.commands[commandID]; dup {
		c.mu.Unlock()
		return fmt.Errorf("start %s on worker %s: command id %q is already running", name, c.name, commandID)
	}
	c.commands[commandID] = cmd
	c.mu.Unlock()
	_, err = c.call(ctx, map[string]any{"op": "start_command", "builder_name": builder,
		"command_id": commandID, "command_name": wire, "args": a})
	if err != nil {
		c.mu.Lock()
		if c.commands[commandID] == cmd {
			delete(c.commands, commandID)
		}
		c.mu.Unlock()
		return fmt.Errorf("start %s on worker %s: %w", name, c.name, err)
	}
	return nil
}

// InterruptCommand implements bbworker.Conn.
func (c *Conn) InterruptCommand(ctx context.Context, builder, commandID, why string) error {
	_, err := c.call(ctx, map[string]any{"op": "interrupt_command", "builder_name": builder,
		"command_id": commandID, "why": why})
	return err
}
