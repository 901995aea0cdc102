package pb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gbb-ci/gbb/pkg/bbworker"
)

// conn is one logged-in worker: the calls of bbworker.Conn go to its mind
// (the worker's bot) and to the worker-for-builder objects
// setBuilderList returned, as buildbot's master-side pb Connection makes
// them.
type conn struct {
	b    *broker
	name string
	mind *remoteRef

	mu       sync.Mutex
	builders map[string]*remoteRef // guarded by mu; by builder name
	commands map[*command]struct{} // guarded by mu; started, not complete
	gone     bool                  // guarded by mu
}

var _ bbworker.Conn = (*conn)(nil)

func (c *conn) Name() string          { return c.name }
func (c *conn) Protocol() string      { return "pb" }
func (c *conn) Remote() string        { return c.b.nc.RemoteAddr().String() }
func (c *conn) Done() <-chan struct{} { return c.b.done }
func (c *conn) Close()                { c.b.shut() }

func (c *conn) Print(ctx context.Context, message string) error {
	_, err := c.b.call(ctx, c.mind.luid, "print", nil, map[string]any{"message": message})
	if err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}

// Keepalive is what buildbot's master does for PB: print "keepalive"
// on the worker, and wait for the answer.
func (c *conn) Keepalive(ctx context.Context) error {
	_, err := c.b.call(ctx, c.mind.luid, "print", nil, map[string]any{"message": "keepalive"})
	if err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	return nil
}

func (c *conn) GetWorkerInfo(ctx context.Context) (map[string]any, error) {
	v, err := c.b.call(ctx, c.mind.luid, "getWorkerInfo", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("getWorkerInfo: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("getWorkerInfo: the worker answered a %T", v)
	}
	return plain(m).(map[string]any), nil
}

func (c *conn) SetBuilderList(ctx context.Context, builders []bbworker.Builder) ([]string, error) {
	list := make([]any, 0, len(builders))
	for _, b := range builders {
		list = append(list, tuple{b.Name, b.Dir})
	}
	v, err := c.b.call(ctx, c.mind.luid, "setBuilderList", tuple{list}, nil)
	if err != nil {
		return nil, fmt.Errorf("setBuilderList: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("setBuilderList: the worker answered a %T", v)
	}
	refs := make(map[string]*remoteRef, len(m))
	names := make([]string, 0, len(m))
	for name, r := range m {
		ref, ok := r.(*remoteRef)
		if !ok {
			return nil, fmt.Errorf("setBuilderList: builder %s is a %T", name, r)
		}
		refs[name] = ref
		names = append(names, name)
	}
	slices.Sort(names)
	c.mu.Lock()
	c.builders = refs
	c.mu.Unlock()
	return names, nil
}

func (c *conn) builder(name string) (*remoteRef, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ref, ok := c.builders[name]
	if !ok {
		return nil, fmt.Errorf("worker %s has no builder %q set up", c.name, name)
	}
	return ref, nil
}

func (c *conn) StartCommand(ctx context.Context, sink bbworker.CommandSink, builder, commandID, name string, args map[string]any) error {
	wfb, err := c.builder(builder)
	if err != nil {
		return fmt.Errorf("startCommand %s: %w", name, err)
	}
	cmd := &command{c: c, sink: sink}
	wire := make(map[string]any, len(args))
	for k, v := range args {
		switch x := v.(type) {
		case bbworker.FileWriter:
			w := &writer{w: x, cmd: cmd}
			cmd.extra = append(cmd.extra, w)
			v = w
		case bbworker.FileReader:
			r := &reader{r: x, cmd: cmd}
			cmd.extra = append(cmd.extra, r)
			v = r
		}
		wire[k] = v
	}
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return fmt.Errorf("startCommand %s: %w", name, ErrConnectionLost)
	}
	c.commands[cmd] = struct{}{}
	c.mu.Unlock()
	if _, err := c.b.call(ctx, wfb.luid, "startCommand", tuple{cmd, commandID, name, wire}, nil); err != nil {
		// The worker did not take it: it will not complete.
		c.mu.Lock()
		delete(c.commands, cmd)
		c.mu.Unlock()
		cmd.forget()
		return fmt.Errorf("startCommand %s: %w", name, err)
	}
	return nil
}

func (c *conn) InterruptCommand(ctx context.Context, builder, commandID, why string) error {
	wfb, err := c.builder(builder)
	if err != nil {
		return fmt.Errorf("interruptCommand: %w", err)
	}
	if _, err := c.b.call(ctx, wfb.luid, "interruptCommand", tuple{commandID, why}, nil); err != nil {
		return fmt.Errorf("interruptCommand: %w", err)
	}
	return nil
}

func (c *conn) Shutdown(ctx context.Context) error {
	_, err := c.b.call(ctx, c.mind.luid, "shutdown", nil, nil)
	if err != nil && !errors.Is(err, ErrConnectionLost) {
		// A worker that shuts down may go before it answers.
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// lost completes, with ErrConnectionLost, the commands the worker had not
// completed when the connection went (as buildbot's RemoteCommand fails
// on a lost connection).
func (c *conn) lost() {
	c.mu.Lock()
	c.gone = true
	cmds := c.commands
	c.commands = nil
	c.mu.Unlock()
	for cmd := range cmds {
		cmd.complete(ErrConnectionLost)
	}
}

// command is the master side of one remote command (RemoteCommandImpl):
// the worker calls update and complete on it.
type command struct {
	c     *conn
	sink  bbworker.CommandSink
	extra []local // its file writer or reader

	once sync.Once
}

func (cmd *command) complete(failure error) {
	cmd.once.Do(func() {
		cmd.forget()
		cmd.sink.Complete(failure)
	})
}

// forget drops the objects the worker may call for this command.
func (cmd *command) forget() {
	cmd.c.b.unregister(cmd)
	for _, l := range cmd.extra {
		cmd.c.b.unregister(l)
	}
}

func (cmd *command) remote(method string, args []any, kw map[string]any) (any, error) {
	switch method {
	case "update":
		if len(args) != 1 {
			return nil, fmt.Errorf("update takes the updates")
		}
		list, ok := args[0].([]any)
		if !ok {
			return nil, fmt.Errorf("updates are a %T", args[0])
		}
		var ups []bbworker.Update
		for _, u := range list {
			// Each update is [dict, number].
			pair, ok := u.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("update is not a pair")
			}
			d, ok := pair[0].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("update is a %T", pair[0])
			}
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				ups = append(ups, bbworker.Update{Key: k, Value: plain(d[k])})
			}
		}
		if len(ups) > 0 {
			cmd.sink.Update(ups)
		}
		return nil, nil
	case "complete":
		var f any
		if len(args) > 0 {
			f = args[0]
		} else if v, ok := kw["failure"]; ok {
			f = v
		}
		var err error
		if f != nil {
			err = &RemoteError{Text: failureText(f)}
		}
		cmd.c.mu.Lock()
		delete(cmd.c.commands, cmd)
		cmd.c.mu.Unlock()
		cmd.complete(err)
		return nil, nil
	}
	return nil, noSuchMethod(method)
}

// failed ends cmd with the error a file writer or reader of it returned
// to the worker. The worker's transfer command ends on it, but
// buildbot-worker 3.7 cannot send the failure it then completes with (a
// failure that came from the master does not jelly again: its type is
// a name, not a class), so it never calls complete.
func (cmd *command) failed(method string, err error) error {
	if err != nil {
		cmd.c.mu.Lock()
		delete(cmd.c.commands, cmd)
		cmd.c.mu.Unlock()
		cmd.complete(fmt.Errorf("%s: %w", method, err))
	}
	return err
}

// writer is a FileWriter the worker writes an upload into.
type writer struct {
	w   bbworker.FileWriter
	cmd *command
}

func (w *writer) remote(method string, args []any, kw map[string]any) (any, error) {
	v, err := w.call(method, args)
	return v, w.cmd.failed(method, err)
}

func (w *writer) call(method string, args []any) (any, error) {
	switch method {
	case "write":
		if len(args) != 1 {
			return nil, fmt.Errorf("write takes the data")
		}
		data, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("write: data is a %T", args[0])
		}
		return nil, w.w.Write([]byte(data))
	case "utime":
		// utime((accessed, modified)), in seconds since the epoch.
		if len(args) != 1 {
			return nil, fmt.Errorf("utime takes (accessed, modified)")
		}
		am, ok := args[0].([]any)
		if !ok || len(am) != 2 {
			return nil, fmt.Errorf("utime takes (accessed, modified)")
		}
		a, err1 := seconds(am[0])
		m, err2 := seconds(am[1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		return nil, w.w.Utime(a, m)
	case "unpack":
		return nil, w.w.Unpack()
	case "close":
		return nil, w.w.Close()
	}
	return nil, noSuchMethod(method)
}

func seconds(v any) (time.Time, error) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1e15 {
			return time.Time{}, fmt.Errorf("time %v out of range", x)
		}
		sec, frac := math.Modf(x)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	case int64:
		return time.Unix(x, 0), nil
	}
	return time.Time{}, fmt.Errorf("time is a %T", v)
}

// reader is a FileReader the worker reads a download from.
type reader struct {
	r   bbworker.FileReader
	cmd *command
}

func (r *reader) remote(method string, args []any, kw map[string]any) (any, error) {
	v, err := r.call(method, args)
	return v, r.cmd.failed(method, err)
}

func (r *reader) call(method string, args []any) (any, error) {
	switch method {
	case "read":
		if len(args) != 1 {
			return nil, fmt.Errorf("read takes the length")
		}
		n, ok := args[0].(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("read: bad length %v", args[0])
		}
		// Banana sends no longer string.
		data, err := r.r.Read(int(min(n, sizeLimit)))
		if err != nil {
			return nil, err
		}
		return data, nil
	case "close":
		return nil, r.r.Close()
	}
	return nil, noSuchMethod(method)
}
