package config

import (
	"net/netip"
	"strings"
)

// trustedProxies reads trusted_proxies of [www]: IP addresses or CIDR
// prefixes.
func (d *decoder) trustedProxies(w *table) []netip.Prefix {
	list, _ := w.strings("trusted_proxies")
	var out []netip.Prefix
	for i, s := range list {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
			p = p.Masked()
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			k := w.path.key("trusted_proxies").index(i)
			w.d.errorAt(k, k, "%q is neither an IP address nor a CIDR prefix", s)
			continue
		}
		out = append(out, p)
	}
	return out
}
