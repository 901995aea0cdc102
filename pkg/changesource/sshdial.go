package changesource

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// go-git's ssh transport (v5) dials its TCP connection with a background
// context and hands it to x/crypto/ssh, which reads the server's greeting
// with no deadline: a remote that accepts and never writes, or a frozen
// sshd, would hold the poll (and the master's stop) for ever, whatever the
// poll's context says. Its one way in is the proxy it dials through, which
// it builds with x/net/proxy's FromURL; so an ssh poll names, as its proxy,
// a scheme of ours whose dialer dials on the poll's context and closes the
// connection as soon as that context is done. x/net/proxy keeps its
// schemes in a process-wide table, so the scheme is registered once and
// each poll's dialer is found by a token of its own in the URL: several
// masters in one process keep their polls apart.

// pollDialScheme is the proxy scheme of the dialers of ssh polls.
const pollDialScheme = "gbb-poll-dial"

var (
	registerPollDial sync.Once
	pollDialers      sync.Map // token → *pollDialer, while its poll's operation runs
)

// pollDialer dials the TCP connections of one ssh operation of a poll.
type pollDialer struct{ ctx context.Context }

// withPollDial returns the proxy options that make go-git dial through a
// pollDialer of ctx, and the function that forgets it once the operation
// has returned.
func withPollDial(ctx context.Context) (transport.ProxyOptions, func()) {
	registerPollDial.Do(func() {
		proxy.RegisterDialerType(pollDialScheme, func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
			d, ok := pollDialers.Load(u.Host)
			if !ok {
				return nil, fmt.Errorf("ssh dial: the poll has ended")
			}
			return d.(*pollDialer), nil
		})
	})
	token := rand.Text()
	pollDialers.Store(token, &pollDialer{ctx: ctx})
	return transport.ProxyOptions{URL: pollDialScheme + "://" + token}, func() { pollDialers.Delete(token) }
}

// Dial dials addr on the poll's context.
func (d *pollDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext dials addr as go-git would (through ALL_PROXY if set, per
// NO_PROXY), until ctx (go-git's, bounded by ssh.ClientConfig.Timeout) or
// the poll's context is done; the connection it returns is closed when the
// poll's context is done, which ends any read or write on it at once.
func (d *pollDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	conn, err := proxy.Dial(dctx, network, addr)
	if err != nil {
		if d.ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", context.Cause(d.ctx), err)
		}
		return nil, err
	}
	stop := context.AfterFunc(d.ctx, func() { conn.Close() })
	return &pollConn{Conn: conn, stop: stop}, nil
}

// pollConn is a connection closed when its poll's context is done.
type pollConn struct {
	net.Conn
	stop func() bool
}

func (c *pollConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
