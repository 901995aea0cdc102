package web

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr returns the address of the client that sent r: the
// connection's peer, or, when the peer is one of the trusted_proxies (SetSite), the
// address its X-Forwarded-For names. That header is read from its end,
// where each trusted proxy appended the address it took the request from,
// and the first address not itself a trusted proxy is the client's: what
// a client writes into the header before that is not believed. The result
// is a bare IP address, or the peer's address as given when it is not one.
func (s *Server) clientAddr(r *http.Request) string {
	peer := r.RemoteAddr
	if h, _, err := net.SplitHostPort(peer); err == nil {
		peer = h
	}
	if !s.trustedProxy(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		client = hop
		if !s.trustedProxy(hop) {
			break
		}
	}
	return client
}

func (s *Server) trustedProxy(addr string) bool {
	proxies := s.site().proxies
	if len(proxies) == 0 {
		return false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedHeaders drops X-Forwarded-Host and X-Forwarded-Proto from a
// request whose peer is not one of the trusted_proxies, before anything
// reads them: anyone could send them, and the same-origin checks
// (auth.OriginOK) take the site's host and scheme from them.
func (s *Server) forwardedHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-Host") != "" || r.Header.Get("X-Forwarded-Proto") != "" {
			peer := r.RemoteAddr
			if h, _, err := net.SplitHostPort(peer); err == nil {
				peer = h
			}
			if !s.trustedProxy(peer) {
				r.Header.Del("X-Forwarded-Host")
				r.Header.Del("X-Forwarded-Proto")
			}
		}
		next.ServeHTTP(w, r)
	})
}
