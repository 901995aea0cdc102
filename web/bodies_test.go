package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
)

// serveBodies serves a Server with change hooks on a loopback port, with a
// BodyTimeout far longer than the test waits, and returns its address.
func serveBodies(t *testing.T) string {
	t.Helper()
	f := newTestServer(t)
	s := New(Config{Store: f.db, Changes: hooks.StoreSink{DB: f.db}, ChangeHooks: testHooks, BodyTimeout: time.Hour})
	lis := must(net.Listen("tcp", "127.0.0.1:0"))(t)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// answerWait bounds how long the tests wait for an answer that, with the
// fix, comes at once; the server's BodyTimeout is an hour.
const answerWait = 20 * time.Second

// TestUnreadBodyNotWaitedFor: a request that declares a body it never
// sends (the probe's slow attack) is answered at once and its connection
// closed, unless it is a POST to a route that reads a body; net/http used
// to wait forever to discard it, before answering.
func TestUnreadBodyNotWaitedFor(t *testing.T) {
	t.Parallel()
	addr := serveBodies(t)
	for _, tt := range []struct {
		name, head string
		status     int
	}{
		{"GET with Content-Length", "GET /api/v2/masters HTTP/1.1\r\nContent-Length: 100000\r\n", http.StatusBadRequest},
		{"GET chunked", "GET /api/v2/masters HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", http.StatusBadRequest},
		{"HEAD with Content-Length", "HEAD / HTTP/1.1\r\nContent-Length: 1000\r\n", http.StatusBadRequest},
		{"GET of /sse/ with a body", "GET /sse/builds HTTP/1.1\r\nContent-Length: 10\r\n", http.StatusBadRequest},
		{"DELETE with Content-Length", "DELETE /api/v2/builds/1 HTTP/1.1\r\nContent-Length: 100000\r\n", http.StatusBadRequest},
		{"POST to a GET route", "POST /api/v2/masters HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n", http.StatusMethodNotAllowed},
		{"POST chunked to a GET route", "POST /api/v2/masters HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n", http.StatusMethodNotAllowed},
		{"POST to no route", "POST /nowhere HTTP/1.1\r\nContent-Length: 100000\r\n", http.StatusNotFound},
		{"cross-site POST to a control", "POST /api/v2/forceschedulers/force HTTP/1.1\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n", http.StatusForbidden},
		{"POST to a control with another content type", "POST /api/v2/builds/1 HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n", http.StatusUnsupportedMediaType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := must(net.Dial("tcp", addr))(t)
			defer c.Close()
			fmt.Fprintf(c, "%sHost: %s\r\n\r\n", tt.head, addr)
			_ = c.SetReadDeadline(time.Now().Add(answerWait))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: strings.Fields(tt.head)[0]})
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s, want %d", resp.Status, body, tt.status)
			}
			// The server closes the connection rather than wait for the body.
			if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("after the answer: read %d bytes, %v; want the connection closed (EOF)", n, err)
			}
		})
	}
}

// TestBodiesKeepAlive: a connection stays alive after requests without a
// body, and after a POST whose body was read.
func TestBodiesKeepAlive(t *testing.T) {
	t.Parallel()
	addr := serveBodies(t)
	c := must(net.Dial("tcp", addr))(t)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerWait))
	br := bufio.NewReader(c)
	hook := `{"comments":"x","author":"a <a@example.org>","revision":"abc","branch":"main","repository":"r"}`
	reqs := []struct{ req string }{
		{"GET /api/v2/builders HTTP/1.1\r\nHost: x\r\n\r\n"},
		{fmt.Sprintf("POST /change_hook/base HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(hook), hook)},
		{"GET /api/v2/builders HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
		{"GET /api/v2/masters HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for i, r := range reqs {
		if _, err := io.WriteString(c, r.req); err != nil {
			t.Fatalf("request %d on the same connection: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the same connection: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Errorf("request %d: %s (close %v) %s, want 200 keeping the connection", i, resp.Status, resp.Close, body)
		}
	}
}
