// Package icmp handles echo from the namespace, ICMPv4 and ICMPv6: requests
// to nsgate's own IPv4 addresses (gateway, DNS) are answered locally
// (EchoReply; package ndp answers its IPv6 ones), so that "ping 10.0.2.2"
// works whatever the host allows; requests to other hosts go out on
// unprivileged ping sockets (Pings). It also builds the destination
// unreachable errors the translators refuse flows with.
package icmp

import (
	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
)

// EchoReply writes into out the reply to p, a decoded echo request, sent
// from the address it was sent to with MAC src, and returns the frame length,
// or 0 if p is not an echo request or out is too small. The reply carries
// the request's identifier, sequence number and payload.
func EchoReply(p *packet.Parsed, src packet.MAC, out []byte) int {
	if p.ICMP == nil || p.ICMP.Type() != packet.ICMPEchoRequest || p.ICMP.Code() != 0 {
		return 0
	}
	// Never answer towards a broadcast or unspecified source.
	if p.SrcMAC.IsMulticast() || p.Src.IsUnspecified() || p.Src == packet.IPv4Broadcast {
		return 0
	}
	l4 := len(p.ICMP)
	n := packet.EtherLen + packet.IPv4Len + l4
	if len(out) < n {
		return 0
	}
	packet.Ether(out).SetHeader(p.SrcMAC, src, packet.EtherTypeIPv4)
	ip := packet.IPv4(out[packet.EtherLen:])
	ip.Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + l4, ID: p.IP.ID(), Protocol: packet.ProtoICMP, Src: p.Dst, Dst: p.Src})
	msg := packet.ICMP(ip[packet.IPv4Len : packet.IPv4Len+l4])
	copy(msg, p.ICMP)
	msg.SetTypeCode(packet.ICMPEchoReply, 0)
	return n
}

// Unreachable writes into out an ICMP destination unreachable (code, an
// ICMPv4 code; an IPv6 packet gets ICMPv6's equivalent) about p, a decoded
// packet from the namespace: from src at srcMAC (nsgate's
// gateway) back to p's sender, quoting p's header and the first 8 bytes of
// its payload (RFC 792), enough for the sender's kernel to find the socket
// (for TCP, the ports and the sequence number). It returns the frame
// length, or 0 if p's header has options (not worth quoting) or out is too
// small.
func Unreachable(p *packet.Parsed, code uint8, src packet.Addr, srcMAC packet.MAC, out []byte) int {
	if p.IP6 != nil {
		return unreachable6(p, code, src, srcMAC, out)
	}
	if p.IP.IHL() != packet.IPv4Len {
		return 0
	}
	quote := min(len(p.IP), packet.IPv4Len+8)
	l4 := packet.ICMPEchoLen + quote
	n := packet.EtherLen + packet.IPv4Len + l4
	if len(out) < n {
		return 0
	}
	packet.Ether(out).SetHeader(p.SrcMAC, srcMAC, packet.EtherTypeIPv4)
	packet.IPv4(out[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + l4, Protocol: packet.ProtoICMP, Src: src, Dst: p.Src})
	m := packet.ICMP(out[packet.EtherLen+packet.IPv4Len : n])
	m.SetError(0)
	copy(m[packet.ICMPEchoLen:], p.IP[:quote])
	m.SetTypeCode(packet.ICMPUnreachable, code)
	return n
}

// minMTU6 is IPv6's minimum MTU: an ICMPv6 error quotes as much of the
// packet as fits in it (RFC 4443 2.4).
const minMTU6 = 1280

// codes6 maps the ICMPv4 unreachable codes nsgate sends to ICMPv6's.
var codes6 = [...]uint8{
	packet.ICMPNetUnreachable:  packet.ICMPv6NoRoute,
	packet.ICMPHostUnreachable: packet.ICMPv6AddrUnreachable,
	packet.ICMPPortUnreachable: packet.ICMPv6PortUnreachable,
	packet.ICMPAdminProhibited: packet.ICMPv6AdminProhibited,
}

// unreachable6 is Unreachable for an IPv6 packet: ICMPv6 destination
// unreachable with the code matching code, an ICMPv4 one.
func unreachable6(p *packet.Parsed, code uint8, src packet.Addr, srcMAC packet.MAC, out []byte) int {
	if p.Src.IsZero() || p.Src.Is6Multicast() || int(code) >= len(codes6) {
		return 0
	}
	quote := min(len(p.IP6), minMTU6-packet.IPv6Len-packet.ICMPEchoLen)
	l4 := packet.ICMPEchoLen + quote
	n := packet.EtherLen + packet.IPv6Len + l4
	if len(out) < n {
		return 0
	}
	packet.Ether(out).SetHeader(p.SrcMAC, srcMAC, packet.EtherTypeIPv6)
	packet.IPv6(out[packet.EtherLen:]).Encode(&packet.IPv6Fields{PayloadLen: l4, NextHeader: packet.ProtoICMPv6, Src: src, Dst: p.Src})
	m := packet.ICMP(out[packet.EtherLen+packet.IPv6Len : n])
	m.SetError(0)
	copy(m[packet.ICMPEchoLen:], p.IP6[:quote])
	m[0], m[1] = packet.ICMPv6Unreachable, codes6[code]
	m.SetICMPv6Checksum(src, p.Src)
	return n
}

// SendUnreachable sends the namespace an ICMP destination unreachable
// (code) about p from src at srcMAC: how a translator refuses a flow at once
// (Unreachable builds it in env's frame).
func SendUnreachable(env flow.Env, p *packet.Parsed, code uint8, src packet.Addr, srcMAC packet.MAC) {
	if n := Unreachable(p, code, src, srcMAC, env.Frame()); n > 0 {
		env.Send(n, packet.Offload{})
	}
}
