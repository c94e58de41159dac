package engine

import (
	"net/netip"
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/tapdev"
)

// withHeader is a frame as the tap hands it over: h, then the frame.
func withHeader(h tapdev.VirtioNetHdr, frame []byte) []byte {
	buf := make([]byte, tapdev.VnetHdrLen+len(frame))
	h.Encode(buf)
	copy(buf[tapdev.VnetHdrLen:], frame)
	return buf
}

// udpFrame is a datagram from the namespace to dst:port.
func udpFrame(dst packet.Addr, port uint16, payload []byte) []byte {
	u := make([]byte, packet.UDPLen+len(payload))
	copy(u[packet.UDPLen:], payload)
	packet.UDP(u).Encode(&packet.UDPFields{SrcPort: 40000, DstPort: port, Length: len(u)})
	packet.UDP(u).SetChecksum(guestIP, dst)
	return ipFrame(GatewayMAC(netip.AddrFrom4([4]byte{10, 0, 2, 2})), guestIP, dst, packet.ProtoUDP, u)
}

// TestTapFrameOffloads: a hostile vnet header, or one whose GSO type is not
// the packet's, drops the frame and counts it, without allocating; a good
// header lets the frame through.
func TestTapFrameOffloads(t *testing.T) {
	cfg := testConfig(t)
	tap := newDiscardTap(t)
	e, err := New(tap, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	echo := echoRequest(addr(cfg.Net.Gateway), 1)
	// 200 bytes in datagrams of 1: more than the kernel's 128 segments.
	uso := udpFrame(packet.AddrFrom4([4]byte{127, 0, 0, 1}), 9, make([]byte, 200))
	for _, c := range []struct {
		name   string
		buf    []byte
		passes bool
	}{
		{"plain", withHeader(tapdev.VirtioNetHdr{}, echo), true},
		{"data valid", withHeader(tapdev.VirtioNetHdr{Flags: tapdev.VirtioNetHdrFDataValid}, echo), true},
		{"unknown flags", withHeader(tapdev.VirtioNetHdr{Flags: 0x10}, echo), false},
		{"csum past the end", withHeader(tapdev.VirtioNetHdr{Flags: tapdev.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 200}, echo), false},
		{"gso size 0", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), HdrLen: 54}, echo), false},
		{"gso size past the frame", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), GSOSize: 9000, HdrLen: 54}, echo), false},
		{"hdr len past the frame", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), GSOSize: 20, HdrLen: 9000}, echo), false},
		{"unknown gso type", withHeader(tapdev.VirtioNetHdr{GSOType: 2, GSOSize: 20, HdrLen: 54}, echo), false},
		{"TSO on an echo request", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), GSOSize: 20, HdrLen: 34}, echo), false},
		{"TCPv6 on IPv4", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOTCPv6), GSOSize: 20, HdrLen: 34}, echo), false},
		{"USO on an echo request", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOUDPL4), GSOSize: 20, HdrLen: 34}, echo), false},
		{"USO of 200 segments", withHeader(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOUDPL4), GSOSize: 1, HdrLen: 42}, uso), false},
	} {
		written, bad := tap.written, e.stats.BadOffload
		e.tapFrame(c.buf, len(c.buf)-tapdev.VnetHdrLen)
		if answered := tap.written != written; answered != c.passes || (e.stats.BadOffload != bad) == c.passes {
			t.Errorf("%s: answered %v, bad offloads %d → %d; want it to pass: %v", c.name, answered, bad, e.stats.BadOffload, c.passes)
		}
		if a := testing.AllocsPerRun(100, func() { e.tapFrame(c.buf, len(c.buf)-tapdev.VnetHdrLen) }); a != 0 {
			t.Errorf("%s: %v allocations", c.name, a)
		}
	}
}

// FuzzTapFrame feeds the engine a frame with a vnet header, both hostile:
// nothing may crash, a header the tap would not send drops the frame and
// is counted, and whatever nsgate answers is itself a well-formed frame.
func FuzzTapFrame(f *testing.F) {
	cfg := testConfig(f)
	echo := echoRequest(addr(cfg.Net.Gateway), 1)
	hdr := func(h tapdev.VirtioNetHdr) []byte { return withHeader(h, nil) }
	f.Add(hdr(tapdev.VirtioNetHdr{}), echo)
	f.Add(hdr(tapdev.VirtioNetHdr{Flags: tapdev.VirtioNetHdrFNeedsCsum, GSOType: uint8(packet.GSOUDPL4), GSOSize: 10, HdrLen: 42, CsumStart: 34, CsumOffset: 6}),
		udpFrame(addr(cfg.Net.Gateway), 9, make([]byte, 95)))
	f.Add(hdr(tapdev.VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), GSOSize: 20, HdrLen: 54}), echo)
	tap := newDiscardTap(f)
	e, err := New(tap, cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, h, frame []byte) {
		buf := make([]byte, tapdev.VnetHdrLen+len(frame))
		copy(buf[:tapdev.VnetHdrLen], h)
		copy(buf[tapdev.VnetHdrLen:], frame)
		var vh tapdev.VirtioNetHdr
		vh.Decode(buf)
		_, herr := vh.Offload(len(frame))
		tap.last = nil
		bad := e.stats.BadOffload
		e.tapFrame(buf, len(frame))
		if herr != nil && (e.stats.BadOffload != bad+1 || tap.last != nil) {
			t.Fatalf("a bad header (%v) was not dropped and counted", herr)
		}
		if tap.last != nil {
			var p packet.Parsed
			if err := p.Decode(tap.last); err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
		}
	})
}
