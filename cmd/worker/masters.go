package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// masterEntry is one master of -master or worker.toml's master(s): its
// address, and the fingerprint to pin for it alone when written
// HOST:PORT#sha256:HEX.
type masterEntry struct {
	Addr        string
	Fingerprint string
}

// splitMasters splits a -master value (or worker.toml's master) at its
// commas.
func splitMasters(s string) []string {
	return strings.Split(s, ",")
}

// parseMasters checks the masters' list: each entry HOST:PORT, or
// HOST:PORT#sha256:HEX; none empty, none twice.
func parseMasters(list []string) ([]masterEntry, error) {
	if len(list) == 0 {
		return nil, errors.New("no master given")
	}
	var out []masterEntry
	seen := map[string]bool{}
	for i, raw := range list {
		s := strings.TrimSpace(raw)
		if s == "" {
			return nil, fmt.Errorf("master %d of %d is empty (a stray comma?)", i+1, len(list))
		}
		addr, pin, hasPin := strings.Cut(s, "#")
		e := masterEntry{Addr: addr}
		if hasPin {
			if _, err := protocol.ParseFingerprint(pin); err != nil {
				return nil, fmt.Errorf("master %q: %w", s, err)
			}
			e.Fingerprint = pin
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("master %q: want HOST:PORT (or HOST:PORT#sha256:HEX): %w", s, err)
		}
		if host == "" {
			return nil, fmt.Errorf("master %q: no host", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("master %q: port %q is not a number from 1 to 65535", s, port)
		}
		if seen[addr] {
			return nil, fmt.Errorf("master %q: given twice", addr)
		}
		seen[addr] = true
		out = append(out, e)
	}
	return out, nil
}

// masterAddrs is what the client dials: each entry with its TLS. The TLS
// settings (t) apply to every master; an entry's own fingerprint pins
// that master instead of t's fingerprint, CA file or system roots. The
// certificate's name is t.ServerName when set, else each master's host.
func masterAddrs(entries []masterEntry, t protocol.ClientTLS) ([]protocol.MasterAddr, error) {
	var out []protocol.MasterAddr
	var errs []error
	for _, e := range entries {
		et := t
		if e.Fingerprint != "" {
			et.Fingerprint, et.CAFile, et.System = e.Fingerprint, "", false
		}
		c, err := et.Config(e.Addr, os.ReadFile)
		if err != nil {
			if len(entries) > 1 {
				err = fmt.Errorf("master %s: %w", e.Addr, err)
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, protocol.MasterAddr{Addr: e.Addr, TLS: c})
	}
	return out, errors.Join(errs...)
}
