package protocol

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Resumable commands: the worker's end (see resume.go for the protocol).

// SpoolStore makes the spools a worker keeps the output of resumable
// commands in, so that it can replay what a master missed. pkg/worker's
// FileSpools keeps them in files.
type SpoolStore interface {
	// Create makes an empty spool for the command key.
	Create(key string) (Spool, error)
}

// Spool holds the output of one command, in order. Its methods are called
// one at a time.
type Spool interface {
	// Write appends a chunk of output.
	Write(o Output) error
	// Replay calls fn with the output from byte offset on (counting the
	// data bytes of every chunk written, in order); a chunk that straddles
	// offset comes cut.
	Replay(offset int64, fn func(Output)) error
	// Remove deletes the spool; it is not used after.
	Remove() error
}

// keeper runs a worker's resumable commands. Unlike the other commands, they
// belong to the Client, not to a session: they outlive a stream that ends,
// for up to their Keep, while the next session reports them in its hello.
type keeper struct {
	exec   Executor
	spools SpoolStore // nil: no command is resumable
	log    *slog.Logger
	wg     sync.WaitGroup // the commands' goroutines

	mu   sync.Mutex
	cmds map[string]*keptCmd // guarded by mu; by resume key
}

// keptCmd is one resumable command.
type keptCmd struct {
	key string
	// master is the address of the master that started it: only that
	// master hears of it. Another one (a worker with several masters)
	// does not know its key, would abandon it, and has no build to go on
	// with; the command waits for its master until its Keep runs out.
	master string
	// builder is the builder the command runs for: its directory is that
	// builder's on this worker (see yield).
	builder string
	keep    time.Duration
	cancel  context.CancelFunc
	spool   Spool
	log     *slog.Logger

	mu        sync.Mutex
	size      int64         // guarded by mu; output bytes so far
	spoolErr  error         // guarded by mu; the spool failed: output since is not kept
	res       *Result       // guarded by mu; set when the command ended
	sess      *session      // guarded by mu; the stream it reports to; nil while detached
	id        uint64        // guarded by mu; its command id on sess
	batch     *batcher      // guarded by mu; sends its output on sess
	timer     *time.Timer   // guarded by mu; runs while detached: then the command is killed
	abandoned bool          // guarded by mu; killed for good: forget it once it ended
	forgotten bool          // guarded by mu
	done      chan struct{} // closed when the command's goroutine returned
}

func newKeeper(exec Executor, spools SpoolStore, log *slog.Logger) *keeper {
	return &keeper{exec: exec, spools: spools, log: log, cmds: map[string]*keptCmd{}}
}

// resumable says whether cmd runs as a resumable command.
func (k *keeper) resumable(cmd Command) bool {
	return k.spools != nil && cmd.ResumeKey != "" && cmd.Keep > 0
}

// report lists the kept commands of master, for the hello.
func (k *keeper) report(master string) []Kept {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []Kept
	for _, c := range k.cmds {
		if c.master != master {
			continue
		}
		c.mu.Lock()
		out = append(out, Kept{ResumeKey: c.key, Complete: c.res != nil, OutputSize: c.size})
		c.mu.Unlock()
	}
	return out
}

// start runs cmd as command id of s. It returns false when it cannot (the
// key is in use, the spool cannot be made): then the caller runs cmd as a
// plain command.
func (k *keeper) start(s *session, id uint64, cmd Command, log *slog.Logger) bool {
	k.mu.Lock()
	if _, ok := k.cmds[cmd.ResumeKey]; ok {
		k.mu.Unlock()
		log.Warn("resume key in use: running the command as not resumable", "key", cmd.ResumeKey)
		return false
	}
	sp, err := k.spools.Create(cmd.ResumeKey)
	if err != nil {
		k.mu.Unlock()
		log.Warn("cannot spool the command's output: running it as not resumable", "err", err)
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &keptCmd{
		key: cmd.ResumeKey, master: s.master, builder: cmd.Builder, keep: cmd.Keep, cancel: cancel, spool: sp, log: log.With("key", cmd.ResumeKey),
		sess: s, id: id, batch: newBatcher(id, s.send), done: make(chan struct{}),
	}
	k.cmds[c.key] = c
	k.mu.Unlock()
	s.mu.Lock()
	s.kept[id] = cancel
	s.mu.Unlock()
	k.wg.Go(func() {
		defer close(c.done)
		c.log.Info("resumable command started")
		res := k.exec.Run(ctx, cmd, c.output)
		cancel()
		c.log.Info("resumable command finished", "exit_code", res.ExitCode, "signal", res.Signal,
			"timed_out", res.TimedOut, "interrupted", res.Interrupted, "err", NewHider(cmd.Secrets).Hide(res.Err), "elapsed_seconds", res.Elapsed.Seconds())
		c.mu.Lock()
		c.res = &res
		if c.abandoned {
			c.mu.Unlock()
			k.forget(c)
			return
		}
		sess, b, id := c.sess, c.batch, c.id
		c.sess, c.batch = nil, nil
		c.mu.Unlock()
		if sess == nil {
			return // detached: the result waits for a master, or the timer
		}
		k.complete(c, sess, b, id)
	})
	return true
}

// complete sends c's Complete as command id of sess, after its output;
// once sent, c is forgotten. If the stream failed meanwhile, c waits for
// the next one.
func (k *keeper) complete(c *keptCmd, sess *session, b *batcher, id uint64) {
	b.close()
	// Off the session once its Complete is sent (or cannot be): a
	// draining session waits for that.
	defer func() {
		sess.mu.Lock()
		delete(sess.kept, id)
		sess.checkIdleLocked()
		sess.mu.Unlock()
	}()
	c.mu.Lock()
	res := *c.res
	c.mu.Unlock()
	b.mu.Lock()
	broken := b.broken
	b.mu.Unlock()
	if !broken {
		if err := sess.send(&WorkerMessage{Msg: &WorkerMessage_Complete{Complete: resultToPB(id, res)}}); err == nil {
			k.forget(c)
			return
		}
	}
	c.log.Warn("cannot report the resumable command's result: keeping it for the next master")
	c.mu.Lock()
	if c.timer == nil && !c.forgotten {
		c.timer = time.AfterFunc(c.keep, func() { k.expire(c) })
	}
	c.mu.Unlock()
}

// output takes the command's output: into the spool, and to the master
// when attached.
func (c *keptCmd) output(o Output) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spoolErr == nil {
		if err := c.spool.Write(o); err != nil {
			c.spoolErr = err
			c.log.Warn("spooling the command's output failed: what follows is not kept", "err", err)
		}
	}
	c.size += int64(len(o.Data))
	if c.batch != nil {
		c.batch.add(o)
	}
}

// detach detaches the commands of s, whose stream ended: they go on,
// their output into their spools only, until a master reattaches them or
// their Keep runs out.
func (k *keeper) detach(s *session) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.cmds {
		c.mu.Lock()
		if c.sess == s {
			b := c.batch
			c.sess, c.batch = nil, nil
			c.timer = time.AfterFunc(c.keep, func() { k.expire(c) })
			c.log.Info("stream ended: keeping the resumable command", "for", c.keep)
			c.mu.Unlock()
			b.close() // fails fast: the stream is gone
			continue
		}
		c.mu.Unlock()
	}
}

// yield kills the commands kept for a master other than master that still
// run for builder, and waits for them to end, before master runs a command
// for builder: two builds must not share the builder's directory. (A worker
// with several masters that moved to another while a resumable command ran
// keeps the command for its master; once the other master ends that build
// RETRY, it builds the request again here, in the same directory.)
func (k *keeper) yield(master, builder string) {
	k.mu.Lock()
	var cs []*keptCmd
	for _, c := range k.cmds {
		if c.master != master && c.builder == builder {
			cs = append(cs, c)
		}
	}
	k.mu.Unlock()
	for _, c := range cs {
		c.mu.Lock()
		if c.sess != nil || c.res != nil || c.abandoned {
			c.mu.Unlock()
			continue // attached elsewhere (not possible: one stream at a time), ended, or being killed
		}
		c.log.Warn("another master runs a command for this builder: killing the command kept for its master, as two builds must not share a directory",
			"builder", builder, "kept_for", c.master, "master", master)
		c.abandoned = true
		if c.timer != nil {
			c.timer.Stop()
		}
		c.mu.Unlock()
		c.cancel()
		<-c.done // the command's goroutine forgets it
	}
}

// expire ends a command no master reattached within its Keep.
func (k *keeper) expire(c *keptCmd) {
	c.mu.Lock()
	if c.sess != nil || c.forgotten {
		c.mu.Unlock()
		return
	}
	c.log.Warn("no master reattached the resumable command in time: killing it", "keep", c.keep)
	c.abandoned = true
	ended := c.res != nil
	c.mu.Unlock()
	c.cancel()
	if ended {
		k.forget(c)
	}
}

// abandon kills the command key of s's master, which the master does not
// know, and forgets it.
func (k *keeper) abandon(s *session, key, why string) {
	k.mu.Lock()
	c := k.cmds[key]
	k.mu.Unlock()
	if c == nil {
		return
	}
	if c.master != s.master {
		k.log.Warn("master abandons a command another master started: ignored", "key", key, "started_by", c.master, "abandoned_by", s.master)
		return
	}
	c.mu.Lock()
	if c.sess != nil {
		c.mu.Unlock()
		k.log.Warn("master abandons a command it runs: ignored", "key", key)
		return
	}
	c.log.Warn("master does not know the resumable command: killing it", "why", why)
	c.abandoned = true
	if c.timer != nil {
		c.timer.Stop()
	}
	ended := c.res != nil
	c.mu.Unlock()
	c.cancel()
	if ended {
		k.forget(c)
	}
}

// reattach makes the kept command of m command m.CommandId of s: its
// output from m.Offset on is sent, then the live rest and its Complete.
func (k *keeper) reattach(s *session, m *Reattach) {
	if m.GetAbandon() {
		k.abandon(s, m.GetResumeKey(), m.GetWhy())
		return
	}
	id := m.GetCommandId()
	k.mu.Lock()
	c := k.cmds[m.GetResumeKey()]
	k.mu.Unlock()
	fail := func(msg string) {
		k.log.Warn("cannot reattach command", "key", m.GetResumeKey(), "why", msg)
		_ = s.send(&WorkerMessage{Msg: &WorkerMessage_Complete{Complete: resultToPB(id, Result{ExitCode: -1, Err: msg})}})
	}
	if c == nil || c.master != s.master {
		// Another master's command is not this one's to go on with.
		fail("worker: no kept command " + m.GetResumeKey())
		return
	}
	c.mu.Lock()
	if c.sess != nil || c.abandoned {
		c.mu.Unlock()
		fail("worker: command " + m.GetResumeKey() + " is attached or being killed")
		return
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	b := newBatcher(id, s.send)
	c.log.Info("reattaching resumable command", "command", id, "offset", m.GetOffset(), "size", c.size)
	if m.GetOffset() > c.size {
		b.add(Output{Stream: Header, Data: fmt.Appendf(nil, "worker: the master has %d bytes of output, the worker only %d\n", m.GetOffset(), c.size)})
	} else if err := c.spool.Replay(m.GetOffset(), b.add); err != nil {
		b.add(Output{Stream: Header, Data: fmt.Appendf(nil, "worker: replaying the spooled output failed: %v\n", err)})
	}
	if c.spoolErr != nil {
		b.add(Output{Stream: Header, Data: fmt.Appendf(nil, "worker: output after a spool failure is lost: %v\n", c.spoolErr)})
	}
	if c.res != nil {
		c.mu.Unlock()
		k.complete(c, s, b, id)
		return
	}
	c.sess, c.id, c.batch = s, id, b
	c.mu.Unlock()
	s.mu.Lock()
	s.kept[id] = c.cancel
	s.mu.Unlock()
}

// forget drops c and its spool; c has ended.
func (k *keeper) forget(c *keptCmd) {
	c.mu.Lock()
	if c.forgotten {
		c.mu.Unlock()
		return
	}
	c.forgotten = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	k.mu.Lock()
	if k.cmds[c.key] == c {
		delete(k.cmds, c.key)
	}
	k.mu.Unlock()
	if err := c.spool.Remove(); err != nil {
		c.log.Warn("remove spool", "err", err)
	}
}

// killAll kills every kept command, waits for them and forgets them: the
// worker is stopping. Attached ones still report to their master.
func (k *keeper) killAll() {
	k.mu.Lock()
	var cs []*keptCmd
	for _, c := range k.cmds {
		cs = append(cs, c)
	}
	k.mu.Unlock()
	for _, c := range cs {
		c.mu.Lock()
		if c.sess == nil {
			c.abandoned = true
		}
		c.mu.Unlock()
		c.cancel()
	}
	for _, c := range cs {
		<-c.done
		k.forget(c)
	}
}

// wait waits for every command's goroutine; killAll comes first.
func (k *keeper) wait() { k.wg.Wait() }
