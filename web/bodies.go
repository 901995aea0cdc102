package web

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gbb-ci/gbb/internal/jsonreply"
)

// requestBodies bounds how long any request's body may hold its
// connection. net/http waits with no deadline for a body the handler did
// not read: before it writes the response (to discard up to 256 KiB so
// that the connection can be kept alive) and again when it closes the
// body. A client that declares a body (Content-Length, or chunked) and
// never sends it would then hold the connection forever, and enough of
// them deny the port (the probe after issue 13). So, first in the chain:
//
//   - only POST takes a body here (the controls and the forms, none over
//     api.MaxRPCBody, 1 MiB; the change hooks, none over hooks.MaxBody,
//     25 MiB, GitHub's largest push); any other method
//     that declares one is answered 400 at once, the connection closed
//     without waiting for the body;
//   - a POST's body must come within BodyTimeout, the read deadline set
//     here, which also bounds net/http's discard of what the handler left;
//   - what a handler did not read of a POST body (a 404, a 405, a refusal
//     before reading) is not waited for: the connection is closed instead
//     of kept alive.
//
// GET upgrades (/ws) and /sse/ carry no body and are left alone, as is
// keep-alive after a body read to its end.
func (s *Server) requestBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if r.Method != http.MethodPost {
			w.Header().Set("Connection", "close")
			_ = rc.SetReadDeadline(time.Now()) // wait for none of it
			s.log.Info("refused a request with a body", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			jsonreply.Error(w, http.StatusBadRequest, r.Method+" request with a body: only POST takes one")
			return
		}
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
		body := &eofReader{ReadCloser: r.Body}
		r.Body = body
		next.ServeHTTP(w, r)
		if !body.eof.Load() {
			// net/http reads what is left after the handler returns:
			// make that read fail at once, which closes the connection.
			_ = rc.SetReadDeadline(time.Now())
		}
	})
}

// eofReader notes whether its reader reached the end.
type eofReader struct {
	io.ReadCloser
	eof atomic.Bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if err == io.EOF {
		e.eof.Store(true)
	}
	return n, err
}
