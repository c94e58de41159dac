// Package policy is nsgate's egress policy: which host addresses and ports
// the namespace's flows may go to (--deny, --allow, --block-host).
//
// Rules are tried in command-line order and the first that matches
// decides; a flow no rule matches is allowed. They match the address a
// flow goes to on the host, after the gateway's mapping: 10.0.2.2 is the
// host's 127.0.0.1, so --deny 127.0.0.1 covers it. A rule with ports
// matches TCP and UDP flows to those ports only, never ICMP echo.
// --block-host is a deny rule for every address of the host: loopback,
// and the addresses of every interface, read from netlink at start and
// kept current as they change (HostAddrs).
//
// The DNS relay is not subject to the policy: queries to the DNS address
// go to the nameservers the host itself uses, chosen by the host's
// resolv.conf, never to an address the namespace picked, and only DNS
// messages go that way. So name resolution keeps working under
// --block-host even when the resolver is the host's own 127.0.0.53.
package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/vishvananda/netlink"
)

// Rule is one --deny, --allow or --block-host.
type Rule struct {
	Deny bool
	// Host matches the host's own addresses (--block-host); Prefix is
	// then unused.
	Host   bool
	Prefix netip.Prefix
	// Ports, if PortHi > 0, limit the rule to TCP and UDP flows to
	// PortLo-PortHi.
	PortLo, PortHi uint16
}

// String is the rule as the command line gives it.
func (r Rule) String() string {
	verb := "--allow "
	if r.Deny {
		verb = "--deny "
	}
	if r.Host {
		return "--block-host"
	}
	s := r.Prefix.String()
	if r.PortHi == 0 {
		return verb + s
	}
	if r.Prefix.Addr().Is6() {
		s = "[" + s + "]"
	}
	if r.PortLo == r.PortHi {
		return fmt.Sprintf("%s%s:%d", verb, s, r.PortLo)
	}
	return fmt.Sprintf("%s%s:%d-%d", verb, s, r.PortLo, r.PortHi)
}

// Parse parses ADDR[/LEN][:PORT[-PORT]], with an IPv6 address in brackets
// when a port follows ([2001:db8::/32]:443). opt names the option for the
// error.
func Parse(opt string, deny bool, v string) (Rule, error) {
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("%s %q: %s (the form is ADDR[/LEN][:PORT[-PORT]], IPv6 in brackets when a port follows)", opt, v, why)
	}
	addr, ports := v, ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return bad("no closing ']'")
		}
		addr, ports = v[1:end], v[end+1:]
		if ports != "" && ports[0] != ':' {
			return bad("':' must follow ']'")
		}
		ports = strings.TrimPrefix(ports, ":")
		if strings.HasPrefix(v[end+1:], ":") && ports == "" {
			return bad("empty port")
		}
	} else if strings.Count(v, ":") == 1 {
		i := strings.IndexByte(v, ':')
		addr, ports = v[:i], v[i+1:]
		if ports == "" {
			return bad("empty port")
		}
	}
	r := Rule{Deny: deny}
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return bad("not an address or prefix")
		}
		if p.Addr().Zone() != "" {
			return bad("a zone has no place in a rule")
		}
		r.Prefix = p.Masked()
	} else {
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Zone() != "" {
			return bad("not an address or prefix")
		}
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if a := r.Prefix.Addr(); a.Is4In6() {
		r.Prefix = netip.PrefixFrom(a.Unmap(), max(r.Prefix.Bits()-96, 0))
	}
	if ports != "" {
		lo, hi, ok := strings.Cut(ports, "-")
		if !ok {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || l == 0 || h < l {
			return bad("ports are 1-65535, low-high")
		}
		r.PortLo, r.PortHi = uint16(l), uint16(h)
	}
	return r, nil
}

// Policy is the rules in force. Its zero value allows everything.
type Policy struct {
	Rules []Rule
	host  *HostAddrs
}

// Active reports whether any rule is set.
func (p *Policy) Active() bool { return p != nil && len(p.Rules) > 0 }

// NeedsHost reports whether a rule matches the host's own addresses, so
// that they must be watched (SetHost).
func (p *Policy) NeedsHost() bool {
	for _, r := range p.Rules {
		if r.Host {
			return true
		}
	}
	return false
}

// SetHost gives the policy the host's addresses for --block-host.
func (p *Policy) SetHost(h *HostAddrs) { p.host = h }

// Allowed reports whether a flow may go to host address a; port is 0 for
// ICMP, whose flows rules with ports do not match.
func (p *Policy) Allowed(a packet.Addr, port uint16) bool {
	if p == nil {
		return true
	}
	ip := a.Netip()
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.PortHi > 0 && (port < r.PortLo || port > r.PortHi) {
			continue
		}
		if r.Host && p.host.Has(ip) || !r.Host && r.Prefix.Contains(ip) {
			return !r.Deny
		}
	}
	return true
}

// HostAddrs is the set of the host's own addresses, kept current from
// netlink. Loopback (127.0.0.0/8, ::1) is always in it.
type HostAddrs struct {
	set  atomic.Pointer[map[netip.Addr]bool]
	mu   sync.Mutex // writers
	done chan struct{}
	wg   sync.WaitGroup
}

// Has reports whether a is an address of the host.
func (h *HostAddrs) Has(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	if h == nil {
		return false
	}
	m := h.set.Load()
	return m != nil && (*m)[a]
}

// WatchHostAddrs reads the addresses of this network namespace and follows
// their changes until Close. Subscribing comes first, so that no change
// between the listing and the subscription is missed.
func WatchHostAddrs() (*HostAddrs, error) {
	h := &HostAddrs{done: make(chan struct{})}
	ch := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(ch, h.done, netlink.AddrSubscribeOptions{}); err != nil {
		return nil, fmt.Errorf("--block-host: follow the host's addresses (netlink): %w", err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		close(h.done)
		return nil, fmt.Errorf("--block-host: list the host's addresses (netlink): %w", err)
	}
	m := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			m[ip.Unmap()] = true
		}
	}
	h.set.Store(&m)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			select {
			case u, ok := <-ch:
				if !ok {
					return
				}
				if ip, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok {
					h.update(ip.Unmap(), u.NewAddr)
				}
			case <-h.done:
				return
			}
		}
	}()
	return h, nil
}

// update adds or removes one address, copying the set so that readers
// never lock.
func (h *HostAddrs) update(a netip.Addr, add bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.set.Load()
	m := make(map[netip.Addr]bool, len(old)+1)
	for k := range old {
		m[k] = true
	}
	if add {
		m[a] = true
	} else {
		delete(m, a)
	}
	h.set.Store(&m)
}

// Close stops following the addresses.
func (h *HostAddrs) Close() {
	if h == nil {
		return
	}
	close(h.done)
	h.wg.Wait()
}
