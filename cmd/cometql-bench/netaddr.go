package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// sourceAddrs decides the local addresses connections are spread over.
//
//	spec ""            auto: for a loopback target, ceil(conns/perAddr)
//	                   addresses from 127.0.0.2 up; otherwise none
//	spec "none"        let the kernel choose (one source address)
//	spec "a,b,c"       exactly these
//	spec "a-b"         the IPv4 range a..b inclusive
//
// Spreading serves two limits: ~28k ephemeral ports per source address, and
// the server's per-IP connection cap (default 1000 browser connections).
func sourceAddrs(spec, target string, conns, perAddr int) ([]string, error) {
	switch spec {
	case "none":
		return nil, nil
	case "":
		host, _, err := net.SplitHostPort(target)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", target, err)
		}
		ip, err := netip.ParseAddr(host)
		if host == "localhost" {
			ip, err = netip.MustParseAddr("127.0.0.1"), nil
		}
		if err != nil || !ip.Is4() || !ip.IsLoopback() {
			return nil, nil
		}
		if perAddr <= 0 {
			perAddr = 1000
		}
		n := max(1, (conns+perAddr-1)/perAddr)
		if n > 60000 {
			return nil, fmt.Errorf("%d source addresses needed: raise --conns-per-addr", n)
		}
		out := make([]string, 0, n)
		a := netip.MustParseAddr("127.0.0.2")
		for range n {
			out = append(out, a.String())
			a = a.Next()
			for a.As4()[3] == 0 || a.As4()[3] == 255 {
				a = a.Next()
			}
		}
		return out, nil
	}
	if lo, hi, ok := strings.Cut(spec, "-"); ok {
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("--src %q: want an IPv4 range like 127.0.0.2-127.0.0.20", spec)
		}
		var out []string
		for ; !b.Less(a); a = a.Next() {
			out = append(out, a.String())
			if len(out) > 65536 {
				return nil, fmt.Errorf("--src %q: range too large", spec)
			}
		}
		return out, nil
	}
	var out []string
	for _, s := range strings.Split(spec, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return nil, fmt.Errorf("--src: %q is not an IP address", s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--src %q names no address", spec)
	}
	return out, nil
}

// newDialer makes a dialer bound to the local address src ("" = any).
func newDialer(src string, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		d.Control = bindNoPort
	}
	return d
}
