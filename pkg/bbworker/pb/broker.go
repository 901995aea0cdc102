package pb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrConnectionLost is returned by calls on a connection that is gone
// (or goes while they wait).
var ErrConnectionLost = errors.New("pb: connection lost")

// RemoteError is returned by calls the worker answered with an error: its
// failure's exception type and message.
type RemoteError struct {
	Text string
}

func (e *RemoteError) Error() string { return "pb: remote error: " + e.Text }

// Bounds of one connection.
const (
	protocolVersion = 6    // pb.Broker.version
	maxLocals       = 1024 // pb.MAX_BROKER_REFS: master objects the worker may hold
	maxPending      = 256  // master calls awaiting the worker's answer
	// Bytes of the worker's calls read and not yet handled, before and
	// after login: the reader waits past them (and then holds one more
	// expression, maxExprSize, at most).
	queuedBeforeLogin = 64 << 10
	queuedLoggedIn    = 16 << 20
	writeTimeout      = time.Minute
)

// local is a master object the worker may call: remote dispatches its
// remote_* (or perspective_*) methods; an error is sent as a failure.
type local interface {
	remote(method string, args []any, kw map[string]any) (any, error)
}

// callError is an error local methods return to send the worker a failure
// of a given exception class (so that its Failure.check matches).
type callError struct {
	parents []string // the exception's class and its bases, most specific first
	msg     string
	close   bool // close the connection once the failure is sent
}

func (e *callError) Error() string { return e.parents[0] + ": " + e.msg }

func noSuchMethod(method string) error {
	return &callError{parents: []string{"twisted.spread.flavors.NoSuchMethod", "twisted.spread.pb.Error"}, msg: "No such method: remote_" + method}
}

type localEntry struct {
	obj  local
	refs int
}

type reply struct {
	v   any
	err error
}

// broker is one Perspective Broker connection (twisted's pb.Broker), on
// the server side: it negotiates the dialect, reads expressions, runs the
// worker's calls on local objects in order (on one goroutine, so that a
// command's updates arrive in the order sent), and matches the answers to
// the master's calls.
type broker struct {
	nc  net.Conn
	log *slog.Logger

	wmu   sync.Mutex // serializes writes
	vocab bool       // set by the handshake, before any concurrent use

	mu      sync.Mutex
	locals  map[any]*localEntry  // guarded by mu; by id: "root" or int64
	ids     map[local]int64      // guarded by mu
	nextID  int64                // guarded by mu
	pending map[int64]chan reply // guarded by mu
	// Calls whose caller gave up: their late answers are dropped.
	abandoned map[int64]struct{} // guarded by mu
	nextReq   int64              // guarded by mu
	closed    bool               // guarded by mu
	why       error              // guarded by mu; why the master dropped the connection

	incoming *queue        // the worker's calls and decrefs, for the dispatch goroutine
	done     chan struct{} // closed when run has returned
}

// queue holds the worker's calls for the dispatch goroutine, bounded in
// bytes rather than in number: a CommandSink may wait on a call to the
// same worker, whose answer comes after more of the worker's updates,
// and the reader must get past those to deliver it.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond // on mu
	items  [][]any   // guarded by mu
	sizes  []int     // guarded by mu
	bytes  int       // guarded by mu; sum of sizes
	limit  int       // guarded by mu
	closed bool      // guarded by mu
}

func newQueue(limit int) *queue {
	q := &queue{limit: limit}
	q.cond.L = &q.mu
	return q
}

// push adds e, waiting while the queue holds limit bytes or more.
func (q *queue) push(e []any, size int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes >= q.limit && !q.closed {
		q.cond.Wait()
	}
	q.items = append(q.items, e)
	q.sizes = append(q.sizes, size)
	q.bytes += size
	q.cond.Broadcast()
}

// pop takes the oldest item, waiting for one; ok is false once the queue
// is closed and empty.
func (q *queue) pop() (e []any, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return nil, false
	}
	e, size := q.items[0], q.sizes[0]
	q.items[0] = nil
	q.items, q.sizes = q.items[1:], q.sizes[1:]
	q.bytes -= size
	q.cond.Broadcast()
	return e, true
}

func (q *queue) setLimit(limit int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = limit
	q.cond.Broadcast()
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

func newBroker(nc net.Conn, log *slog.Logger) *broker {
	return &broker{
		nc:        nc,
		log:       log,
		locals:    make(map[any]*localEntry),
		ids:       make(map[local]int64),
		pending:   make(map[int64]chan reply),
		abandoned: make(map[int64]struct{}),
		incoming:  newQueue(queuedBeforeLogin),
		done:      make(chan struct{}),
	}
}

// run serves the connection with root as the object named "root" until
// it breaks or is closed; it returns why, after every goroutine it
// started has exited.
func (b *broker) run(root local) error {
	defer close(b.done)
	defer b.shut()
	b.mu.Lock()
	b.locals["root"] = &localEntry{obj: root, refs: 1}
	b.mu.Unlock()

	dec := newDecoder(b.nc)
	// Banana's negotiation: the server offers its dialects, the client
	// answers with the one it picked; then PB's version exchange.
	if err := b.send([]any{"pb", "none"}); err != nil {
		return err
	}
	d, err := dec.expr()
	if err != nil {
		return fmt.Errorf("read dialect: %w", err)
	}
	dialect, _ := d.([]byte)
	switch string(dialect) {
	case "pb":
		b.vocab, dec.vocab = true, true
	case "none":
	default:
		return fmt.Errorf("%w: client picked dialect %q", ErrBanana, dialect)
	}
	if err := b.send([]any{"version", int64(protocolVersion)}); err != nil {
		return err
	}

	incoming := b.incoming
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			e, ok := incoming.pop()
			if !ok {
				return
			}
			if string(e[0].([]byte)) == "decref" {
				b.decref(e[1])
			} else {
				b.dispatch(e[1:])
			}
		}
	})
	defer wg.Wait()
	defer incoming.close()
	defer b.shut() // first, so a dispatch blocked on a send returns
	for {
		e, err := dec.expr()
		if err != nil {
			return err
		}
		if err := b.handle(e, dec.size); err != nil {
			return err
		}
	}
}

// shut closes the connection and fails the calls waiting on it.
func (b *broker) shut() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	b.nc.Close()
	for _, ch := range pending {
		ch <- reply{err: ErrConnectionLost}
	}
}

// handle acts on one expression from the worker.
func (b *broker) handle(e any, size int) error {
	l, ok := e.([]any)
	if !ok || len(l) == 0 {
		return fmt.Errorf("%w: expression is not a list", ErrBanana)
	}
	cmd, ok := l[0].([]byte)
	if !ok {
		return fmt.Errorf("%w: expression headed by %T", ErrBanana, l[0])
	}
	args := l[1:]
	switch string(cmd) {
	case "version":
		if len(args) != 1 || args[0] != int64(protocolVersion) {
			return fmt.Errorf("pb: version incompatibility: %d %v", protocolVersion, args)
		}
	case "message":
		if len(args) != 6 {
			return fmt.Errorf("pb: message of %d items", len(args))
		}
		b.incoming.push(l, size)
	case "answer", "error":
		if len(args) != 2 {
			return fmt.Errorf("pb: %s of %d items", cmd, len(args))
		}
		id, _ := args[0].(int64)
		b.mu.Lock()
		ch, ok := b.pending[id]
		delete(b.pending, id)
		_, late := b.abandoned[id]
		delete(b.abandoned, id)
		b.mu.Unlock()
		if late {
			return nil
		}
		if !ok {
			return fmt.Errorf("pb: %s to request %v never made", cmd, args[0])
		}
		u := unjellier{locals: b.lookup}
		v, err := u.unjelly(args[1])
		switch {
		case errors.Is(err, errTooManyNodes):
			ch <- reply{err: err}
			return err
		case err != nil:
			ch <- reply{err: err}
		case string(cmd) == "error":
			ch <- reply{err: &RemoteError{Text: failureText(v)}}
		default:
			ch <- reply{v: v}
		}
	case "decref":
		// In order with the calls: a worker drops its reference to an
		// object (a login's challenger) right after calling it.
		if len(args) != 1 {
			return fmt.Errorf("pb: decref of %d items", len(args))
		}
		b.incoming.push(l, size)
	case "didNotUnderstand":
		b.log.Warn("pb: worker did not understand", "command", fmt.Sprint(plain(args)))
	case "decache", "uncache":
		// Cached objects: the master sends none.
	default:
		// What twisted's Broker answers to a command it lacks.
		return b.send([]any{"didNotUnderstand", cmd})
	}
	return nil
}

// dispatch runs one call of the worker's: [requestID, objectID, method,
// answerRequired, args, kwargs].
func (b *broker) dispatch(m []any) {
	reqID, _ := m[0].(int64)
	answer, _ := m[3].(int64)
	result, err := b.invoke(m)
	if answer == 0 {
		if err != nil {
			b.log.Debug("pb: call without answer failed", "err", err)
		}
		return
	}
	if err == nil {
		var j any
		if j, err = jelly(result, b.register); err == nil {
			b.send([]any{"answer", reqID, j})
			return
		}
	}
	var ce *callError
	if !errors.As(err, &ce) {
		ce = &callError{parents: []string{"builtins.RuntimeError"}, msg: err.Error()}
	}
	j, jerr := jelly(failure(ce.parents, ce.msg), b.register)
	if jerr != nil {
		b.log.Error("pb: cannot send failure", "err", jerr)
		b.shut()
		return
	}
	b.send([]any{"error", reqID, j})
	if ce.close {
		b.mu.Lock()
		if b.why == nil {
			b.why = ce
		}
		b.mu.Unlock()
		b.shut()
	}
}

// reason is why the master dropped the connection, if it did so after
// answering a call.
func (b *broker) reason() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.why
}

func (b *broker) invoke(m []any) (any, error) {
	id := m[1]
	if s, ok := id.([]byte); ok {
		id = string(s)
	}
	method, ok := m[2].([]byte)
	if !ok {
		return nil, fmt.Errorf("method name is a %T", m[2])
	}
	obj, ok := b.lookup(id)
	if !ok {
		return nil, &callError{parents: []string{"twisted.spread.pb.Error"}, msg: "Invalid Object ID"}
	}
	u := unjellier{locals: b.lookup}
	a, err := u.unjelly(m[4])
	if err != nil {
		return nil, unjellyError(err)
	}
	args, ok := a.([]any)
	if !ok {
		return nil, fmt.Errorf("arguments are a %T", a)
	}
	u.refs = nil // args and kwargs are jellied apart
	k, err := u.unjelly(m[5])
	if err != nil {
		return nil, unjellyError(err)
	}
	kw, ok := k.(map[string]any)
	if !ok && k != nil {
		return nil, fmt.Errorf("keyword arguments are a %T", k)
	}
	return obj.remote(string(method), args, kw)
}

// unjellyError is the failure for arguments unjelly refused; a peer that
// sent an expression standing for too many values is dropped.
func unjellyError(err error) error {
	if errors.Is(err, errTooManyNodes) {
		return &callError{parents: []string{"builtins.RuntimeError"}, msg: err.Error(), close: true}
	}
	return err
}

func (b *broker) lookup(id any) (local, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.locals[id]
	if !ok {
		return nil, false
	}
	return e.obj, true
}

// register gives obj an id the worker can call it by, counting one more
// reference to it (pb.Broker.registerReference).
func (b *broker) register(obj local) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id, ok := b.ids[obj]; ok {
		b.locals[id].refs++
		return id, nil
	}
	if len(b.locals) >= maxLocals {
		return 0, fmt.Errorf("pb: the worker holds %d master objects already", len(b.locals))
	}
	b.nextID++
	b.locals[b.nextID] = &localEntry{obj: obj, refs: 1}
	b.ids[obj] = b.nextID
	return b.nextID, nil
}

// unregister forgets obj whatever its references.
func (b *broker) unregister(obj local) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id, ok := b.ids[obj]; ok {
		delete(b.ids, obj)
		delete(b.locals, id)
	}
}

func (b *broker) decref(id any) {
	n, ok := id.(int64)
	if !ok {
		return // "root" stays
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.locals[n]
	if !ok {
		return
	}
	if e.refs--; e.refs <= 0 {
		delete(b.locals, n)
		delete(b.ids, e.obj)
	}
}

// send writes one expression.
func (b *broker) send(e []any) error {
	buf, err := encode(nil, e, b.vocab)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := b.nc.Write(buf); err != nil {
		b.shut()
		return fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	return nil
}

// call calls method on the worker's object id ("root" or a luid) and
// waits for its answer.
func (b *broker) call(ctx context.Context, id any, method string, args tuple, kw map[string]any) (any, error) {
	netArgs, err := jelly(args, b.register)
	if err != nil {
		return nil, err
	}
	if kw == nil {
		kw = map[string]any{}
	}
	netKw, err := jelly(kw, b.register)
	if err != nil {
		return nil, err
	}
	ch := make(chan reply, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrConnectionLost
	}
	if len(b.pending) >= maxPending {
		b.mu.Unlock()
		return nil, fmt.Errorf("pb: %d calls to the worker await an answer already", maxPending)
	}
	b.nextReq++
	req := b.nextReq
	b.pending[req] = ch
	b.mu.Unlock()
	if err := b.send([]any{"message", req, id, method, int64(1), netArgs, netKw}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		b.mu.Lock()
		if _, ok := b.pending[req]; ok {
			delete(b.pending, req)
			b.abandoned[req] = struct{}{}
		}
		broken := len(b.abandoned) > maxPending
		b.mu.Unlock()
		if broken {
			// A worker that leaves this many calls unanswered is stuck.
			b.shut()
		}
		return nil, ctx.Err()
	}
}
