// Package publish describes port forwards: Rule, and Parse, which reads
// podman's -p/--publish syntax. It is plain data, shared by the command
// line (config), the API and the listeners (fwd).
package publish

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one forward: HostAddr:HostPort on the host to GuestAddr:GuestPort
// in the namespace.
type Rule struct {
	ID        int    // from 1, in the order added; set by fwd.Table
	Proto     string // "tcp" or "udp"
	HostAddr  netip.Addr
	HostPort  uint16
	GuestAddr netip.Addr
	GuestPort uint16
	// Iface, if set, binds the host socket to that interface (pasta's
	// ADDR%IFNAME/PORT).
	Iface string `json:",omitempty"`
}

// Parse parses one -p/--publish value, in podman's syntax:
//
//	[HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]
//
// HOSTPORT alone forwards the same port number; HOSTADDR defaults to
// 0.0.0.0, the protocol to tcp. An IPv6 HOSTADDR is in brackets:
// [::]:8080:80, [::1]:8080:80/udp. Either port may be a range (8000-8009);
// both ranges must then be the same length. The guest address is left
// unset: the caller fills in the namespace's address.
func Parse(s string) ([]Rule, error) {
	spec, proto := s, "tcp"
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		spec, proto = s[:i], s[i+1:]
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("--publish %q: protocol %q: must be tcp or udp", s, proto)
		}
	}
	host := netip.IPv4Unspecified()
	var hostPorts, guestPorts string
	if strings.HasPrefix(spec, "[") {
		// [IPv6]:HOSTPORT[:GUESTPORT]
		addr, rest, ok := strings.Cut(spec[1:], "]:")
		a, err := netip.ParseAddr(addr)
		if !ok || err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return nil, fmt.Errorf("--publish %q: host address %q: not an IPv6 address in brackets followed by :PORT", s, addr)
		}
		host = a
		hostPorts, guestPorts, ok = strings.Cut(rest, ":")
		if !ok {
			guestPorts = hostPorts
		}
		return rules(s, proto, host, hostPorts, guestPorts)
	}
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 1:
		hostPorts, guestPorts = parts[0], parts[0]
	case 2:
		if a, err := netip.ParseAddr(parts[0]); err == nil {
			host, hostPorts, guestPorts = a, parts[1], parts[1]
		} else {
			hostPorts, guestPorts = parts[0], parts[1]
		}
	case 3:
		a, err := netip.ParseAddr(parts[0])
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("--publish %q: host address %q: not an IPv4 address (an IPv6 one goes in brackets: [::1]:8080:80)", s, parts[0])
		}
		host, hostPorts, guestPorts = a, parts[1], parts[2]
	default:
		return nil, fmt.Errorf("--publish %q: expected [HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]", s)
	}
	if !host.Is4() {
		return nil, fmt.Errorf("--publish %q: host address %s: an IPv6 address goes in brackets: [%s]:%s", s, host, host, hostPorts)
	}
	return rules(s, proto, host, hostPorts, guestPorts)
}

// rules makes the rules of one --publish value s.
func rules(s, proto string, host netip.Addr, hostPorts, guestPorts string) ([]Rule, error) {
	hLo, hHi, err := PortRange(hostPorts)
	if err != nil {
		return nil, fmt.Errorf("--publish %q: host port: %w", s, err)
	}
	gLo, gHi, err := PortRange(guestPorts)
	if err != nil {
		return nil, fmt.Errorf("--publish %q: guest port: %w", s, err)
	}
	if hHi-hLo != gHi-gLo {
		return nil, fmt.Errorf("--publish %q: host ports %s and guest ports %s differ in number", s, hostPorts, guestPorts)
	}
	rules := make([]Rule, 0, hHi-hLo+1)
	for i := 0; i <= hHi-hLo; i++ {
		rules = append(rules, Rule{Proto: proto, HostAddr: host, HostPort: uint16(hLo + i), GuestPort: uint16(gLo + i)})
	}
	return rules, nil
}

// PortRange parses PORT or LO-HI, ports 1-65535 (LO-HI: LO first).
func PortRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = port(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = port(b); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("range %q ends before it starts", s)
	}
	return lo, hi, nil
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}
