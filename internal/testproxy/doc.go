// Package testproxy is a TCP proxy on loopback that can freeze one of the
// connections it carries: it then forwards nothing more either way and
// closes neither side, as a proxy, NAT entry or firewall that stopped
// passing a connection's packets does, so that the server sees the
// session idle, not gone. It is for tests only.
package testproxy
