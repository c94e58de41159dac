// Package ndp is nsgate's IPv6 router on the namespace's link: it answers
// Neighbour Solicitations for its own addresses, Router Solicitations with
// a Router Advertisement (prefix, MTU, RDNSS), and echo requests to its
// addresses; and it advertises unsolicited at start and then periodically,
// as a router does (RFC 4861 6.2.4), so that a namespace that never
// solicits still learns its prefix and default route.
package ndp

import (
	"encoding/binary"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

// Config describes the link.
type Config struct {
	MAC       packet.MAC  // nsgate's
	Prefix    packet.Addr // the /64 the namespace's addresses come from
	Gateway   packet.Addr // the router's global address (fd00::2)
	LinkLocal packet.Addr // the router's link-local address (fe80::2), the RA's source
	DNS       packet.Addr // the DNS address (fd00::3); zero: no RDNSS, no answers for it
	MTU       int
	// Managed and Other are the RA's M and O flags: set them when DHCPv6
	// leases addresses (M) or answers Information-Requests (O).
	Managed, Other bool
	// Proxy answers solicitations for every global address but Guest, the
	// namespace's own: pasta's addressing, where the namespace shares the
	// host's prefix and its neighbours are all behind nsgate.
	Proxy bool
	Guest packet.Addr
}

// Router lifetimes and the advertisement schedule. The default-router and
// prefix lifetimes are RFC 4861's defaults for a 600 s interval; nsgate
// lives as long as the namespace does, so nothing is gained by shorter.
const (
	routerLifetime    = 1800 // s
	validLifetime     = 86400
	preferredLifetime = 14400
	rdnssLifetime     = 1800
	// Interval is how often unsolicited advertisements go out after the
	// first few; initialInterval spaces those (RFC 4861 6.2.4: at most
	// MAX_INITIAL_RTR_ADVERT_INTERVAL, 16 s).
	Interval        = 600 * time.Second
	initialInterval = 4 * time.Second
	initialAdverts  = 3
)

// AllNodes is ff02::1, where unsolicited advertisements go.
var AllNodes = packet.Addr{0: 0xff, 1: 0x02, 15: 0x01}

// Router answers NDP and advertises the prefix.
type Router struct {
	cfg     Config
	nextRA  time.Duration // when the next unsolicited advertisement is due
	adverts int           // unsolicited advertisements sent

	// Counters, for the engine's stats.
	Answered, Dropped uint64
}

// New returns a router for cfg; its first advertisement is due at once.
func New(cfg Config) *Router { return &Router{cfg: cfg, nextRA: 1} }

// Owns reports whether a is one of the router's addresses.
func (r *Router) Owns(a packet.Addr) bool {
	return a == r.cfg.Gateway || a == r.cfg.LinkLocal || (!r.cfg.DNS.IsZero() && a == r.cfg.DNS)
}

// Handle processes an ICMPv6 message p from the namespace. If it calls for
// an answer (a Neighbour Solicitation for one of the router's addresses, a
// Router Solicitation, an echo request to one of them), it writes the frame
// into out and returns its length; otherwise 0. Malformed messages are
// counted in Dropped.
func (r *Router) Handle(p *packet.Parsed, out []byte) int {
	m := p.ICMP
	switch m.Type() {
	case packet.ICMPv6NeighborSol:
		return r.neighborSol(p, out)
	case packet.ICMPv6RouterSol:
		if !r.validNDP(p, packet.NDPRouterSolLen) {
			return 0
		}
		if !r.optionsValid(m, packet.NDPRouterSolLen) {
			r.Dropped++
			return 0
		}
		r.Answered++
		// To all nodes, as most routers answer: the soliciting host may
		// not have an address yet (source ::).
		return r.Advert(out, p.SrcMAC, AllNodes)
	case packet.ICMPv6EchoRequest:
		if !r.Owns(p.Dst) || len(m) < packet.ICMPEchoLen {
			return 0
		}
		return r.echoReply(p, out)
	}
	return 0
}

// validNDP checks what RFC 4861 requires of every NDP message before it is
// acted on: hop limit 255 (not forwarded), code 0, and the fixed length.
func (r *Router) validNDP(p *packet.Parsed, minLen int) bool {
	if p.IP6.HopLimit() != packet.NDPHopLimit || p.ICMP.Code() != 0 || len(p.ICMP) < minLen {
		r.Dropped++
		return false
	}
	return true
}

func (r *Router) optionsValid(m packet.ICMP, off int) bool {
	return m.NDPOptions(off, func(uint8, []byte) {})
}

// proxies reports whether a proxying router answers a solicitation from
// src for target: not for the namespace's own address, nor duplicate
// address detection (src ::), nor link-local or multicast targets.
func (r *Router) proxies(target, src packet.Addr) bool {
	t := target.Netip()
	return r.cfg.Proxy && !src.IsZero() && target != r.cfg.Guest && target != src &&
		!t.IsLinkLocalUnicast() && !t.IsMulticast() && !t.IsUnspecified()
}

// neighborSol answers a solicitation for one of the router's addresses with
// a solicited, overriding advertisement from a router.
func (r *Router) neighborSol(p *packet.Parsed, out []byte) int {
	m := p.ICMP
	if !r.validNDP(p, packet.NDPNeighborLen) {
		return 0
	}
	if !r.optionsValid(m, packet.NDPNeighborLen) {
		r.Dropped++
		return 0
	}
	target := m.NDPTarget()
	if !r.Owns(target) && !r.proxies(target, p.Src) {
		return 0
	}
	flags := uint8(packet.NARouter | packet.NAOverride)
	dst, dstMAC := p.Src, p.SrcMAC
	if p.Src.IsZero() {
		// Duplicate address detection of one of our addresses: the
		// answer goes to all nodes, unsolicited (RFC 4861 7.2.4).
		dst, dstMAC = AllNodes, packet.MulticastMAC(AllNodes)
	} else {
		flags |= packet.NASolicit
	}
	const n = packet.NDPNeighborLen + 8 // and the target link-layer option
	msg := r.header(out, dstMAC, target, dst, n)
	if msg == nil {
		return 0
	}
	msg[0], msg[1] = packet.ICMPv6NeighborAdv, 0
	clear(msg[4:8])
	msg[4] = flags
	copy(msg[8:24], target[:])
	w := packet.NDPWriter{B: msg, N: packet.NDPNeighborLen}
	w.LinkLayer(packet.NDPOptTargetLL, r.cfg.MAC)
	msg.SetICMPv6Checksum(target, dst)
	r.Answered++
	return packet.EtherLen + packet.IPv6Len + n
}

// Advert writes a router advertisement to dst (at dstMAC; a multicast dst
// gets its own multicast MAC) into out and returns the frame's length.
func (r *Router) Advert(out []byte, dstMAC packet.MAC, dst packet.Addr) int {
	if dst.Is6Multicast() {
		dstMAC = packet.MulticastMAC(dst)
	}
	n := packet.NDPRouterAdvLen + 8 + 32 + 8 // source LL, prefix, MTU
	if !r.cfg.DNS.IsZero() {
		n += 24
	}
	msg := r.header(out, dstMAC, r.cfg.LinkLocal, dst, n)
	if msg == nil {
		return 0
	}
	clear(msg[:packet.NDPRouterAdvLen])
	msg[0] = packet.ICMPv6RouterAdv
	msg[4] = 64 // the hop limit hosts should use
	if r.cfg.Managed {
		msg[5] |= packet.RAManaged
	}
	if r.cfg.Other {
		msg[5] |= packet.RAOther
	}
	binary.BigEndian.PutUint16(msg[6:], routerLifetime)
	w := packet.NDPWriter{B: msg, N: packet.NDPRouterAdvLen}
	w.LinkLayer(packet.NDPOptSourceLL, r.cfg.MAC)
	w.PrefixInfo(r.cfg.Prefix, 64, validLifetime, preferredLifetime)
	w.MTU(uint32(r.cfg.MTU))
	if !r.cfg.DNS.IsZero() {
		w.RDNSS(r.cfg.DNS, rdnssLifetime)
	}
	msg.SetICMPv6Checksum(r.cfg.LinkLocal, dst)
	return packet.EtherLen + packet.IPv6Len + n
}

// header writes Ethernet and IPv6 headers for an NDP message of n bytes
// and returns the message's slice of out, or nil if out is too short.
func (r *Router) header(out []byte, dstMAC packet.MAC, src, dst packet.Addr, n int) packet.ICMP {
	if len(out) < packet.EtherLen+packet.IPv6Len+n {
		return nil
	}
	packet.Ether(out).SetHeader(dstMAC, r.cfg.MAC, packet.EtherTypeIPv6)
	packet.IPv6(out[packet.EtherLen:]).Encode(&packet.IPv6Fields{PayloadLen: n, NextHeader: packet.ProtoICMPv6, HopLimit: packet.NDPHopLimit, Src: src, Dst: dst})
	return packet.ICMP(out[packet.EtherLen+packet.IPv6Len : packet.EtherLen+packet.IPv6Len+n])
}

// echoReply answers an echo request to one of the router's addresses.
func (r *Router) echoReply(p *packet.Parsed, out []byte) int {
	n := len(p.ICMP)
	if len(out) < packet.EtherLen+packet.IPv6Len+n {
		return 0
	}
	packet.Ether(out).SetHeader(p.SrcMAC, r.cfg.MAC, packet.EtherTypeIPv6)
	packet.IPv6(out[packet.EtherLen:]).Encode(&packet.IPv6Fields{PayloadLen: n, NextHeader: packet.ProtoICMPv6, Src: p.Dst, Dst: p.Src})
	msg := packet.ICMP(out[packet.EtherLen+packet.IPv6Len : packet.EtherLen+packet.IPv6Len+n])
	copy(msg, p.ICMP)
	msg[0], msg[1] = packet.ICMPv6EchoReply, 0
	msg.SetICMPv6Checksum(p.Dst, p.Src)
	r.Answered++
	return packet.EtherLen + packet.IPv6Len + n
}

// NextTimer returns when the next unsolicited advertisement is due.
func (r *Router) NextTimer() time.Duration { return r.nextRA }

// Tick writes the unsolicited advertisement into out if it is due at now,
// and returns its length (0 if none is due).
func (r *Router) Tick(now time.Duration, out []byte) int {
	if now < r.nextRA {
		return 0
	}
	r.adverts++
	if r.adverts < initialAdverts {
		r.nextRA = now + initialInterval
	} else {
		r.nextRA = now + Interval
	}
	return r.Advert(out, packet.MAC{}, AllNodes)
}
