package arp

import (
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

var (
	gwMAC   = packet.MAC{0x52, 0x55, 10, 0, 2, 2}
	nsMAC   = packet.MAC{2, 0, 0, 0, 0, 0x64}
	gw      = packet.AddrFrom4([4]byte{10, 0, 2, 2})
	dns     = packet.AddrFrom4([4]byte{10, 0, 2, 3})
	guestIP = packet.AddrFrom4([4]byte{10, 0, 2, 100})
)

func frame(op uint16, sha packet.MAC, spa packet.Addr, tpa packet.Addr) *packet.Parsed {
	f := make([]byte, packet.EtherLen+packet.ARPLen)
	packet.Ether(f).SetHeader(packet.BroadcastMAC, sha, packet.EtherTypeARP)
	packet.ARP(f[packet.EtherLen:]).Encode(&packet.ARPFields{Op: op, SenderMAC: sha, SenderIP: spa, TargetIP: tpa})
	var p packet.Parsed
	if err := p.Decode(f); err != nil {
		panic(err)
	}
	return &p
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name   string
		p      *packet.Parsed
		answer bool
		learn  bool
	}{
		{"request for gateway", frame(packet.ARPRequest, nsMAC, guestIP, gw), true, true},
		{"request for dns", frame(packet.ARPRequest, nsMAC, guestIP, dns), true, true},
		{"request for another address", frame(packet.ARPRequest, nsMAC, guestIP, packet.AddrFrom4([4]byte{10, 0, 2, 50})), false, true},
		{"gratuitous", frame(packet.ARPRequest, nsMAC, guestIP, guestIP), false, true},
		{"reply to gateway", frame(packet.ARPReply, nsMAC, guestIP, gw), false, true},
		{"probe from 0.0.0.0", frame(packet.ARPRequest, nsMAC, packet.AddrFrom4([4]byte{}), gw), true, false},
		{"sender claims the gateway", frame(packet.ARPRequest, nsMAC, gw, dns), false, false},
		{"multicast sender", frame(packet.ARPRequest, packet.BroadcastMAC, guestIP, gw), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResponder(gwMAC, gw, dns)
			out := make([]byte, 100)
			n := r.Handle(tt.p, out)
			if (n > 0) != tt.answer {
				t.Fatalf("answered = %v, want %v", n > 0, tt.answer)
			}
			if _, ok := r.Neighbors.Lookup(guestIP); ok != tt.learn {
				t.Fatalf("learned = %v, want %v", ok, tt.learn)
			}
			if n == 0 {
				return
			}
			var reply packet.Parsed
			if err := reply.Decode(out[:n]); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			a := reply.ARP
			req := tt.p.ARP
			if reply.DstMAC != req.SenderMAC() || reply.SrcMAC != gwMAC || a.Op() != packet.ARPReply ||
				a.SenderMAC() != gwMAC || a.SenderIP() != req.TargetIP() ||
				a.TargetMAC() != req.SenderMAC() || a.TargetIP() != req.SenderIP() {
				t.Fatalf("bad reply: dst %v src %v op %d sha %v spa %v tha %v tpa %v",
					reply.DstMAC, reply.SrcMAC, a.Op(), a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
			}
		})
	}
}

func TestHandleShortBuffer(t *testing.T) {
	r := NewResponder(gwMAC, gw)
	if n := r.Handle(frame(packet.ARPRequest, nsMAC, guestIP, gw), make([]byte, 41)); n != 0 {
		t.Fatalf("wrote %d bytes into a 41-byte buffer", n)
	}
}

func TestTableBounded(t *testing.T) {
	var tb Table
	for i := 0; i < 3*TableSize; i++ {
		tb.Learn(packet.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), packet.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)})
	}
	if tb.n != TableSize {
		t.Fatalf("table holds %d entries, want %d", tb.n, TableSize)
	}
	last := 3*TableSize - 1
	if m, ok := tb.Lookup(packet.AddrFrom4([4]byte{10, 0, byte(last >> 8), byte(last)})); !ok || m[5] != byte(last) {
		t.Fatalf("latest entry lost: %v %v", m, ok)
	}
	if _, ok := tb.Lookup(packet.AddrFrom4([4]byte{10, 0, 0, 0})); ok {
		t.Fatal("oldest entry still present after the table wrapped")
	}
	tb.Learn(packet.AddrFrom4([4]byte{10, 0, byte(last >> 8), byte(last)}), nsMAC)
	if m, _ := tb.Lookup(packet.AddrFrom4([4]byte{10, 0, byte(last >> 8), byte(last)})); m != nsMAC {
		t.Fatal("re-learning did not update the MAC")
	}
}

func TestHandleAllocs(t *testing.T) {
	r := NewResponder(gwMAC, gw, dns)
	p := frame(packet.ARPRequest, nsMAC, guestIP, gw)
	out := make([]byte, 100)
	if n := testing.AllocsPerRun(100, func() { r.Handle(p, out) }); n != 0 {
		t.Fatalf("Handle allocates %v times", n)
	}
}

// TestAnswerAllBut: in pasta's addressing the responder answers for every
// neighbour but the namespace's own address, and stays out of its probes
// and announcements.
func TestAnswerAllBut(t *testing.T) {
	remote := packet.AddrFrom4([4]byte{10, 0, 2, 50})
	tests := []struct {
		name   string
		p      *packet.Parsed
		answer bool
	}{
		{"a neighbour", frame(packet.ARPRequest, nsMAC, guestIP, remote), true},
		{"the gateway", frame(packet.ARPRequest, nsMAC, guestIP, gw), true},
		{"the namespace's own address", frame(packet.ARPRequest, nsMAC, remote, guestIP), false},
		{"an announcement", frame(packet.ARPRequest, nsMAC, remote, remote), false},
		{"a probe", frame(packet.ARPRequest, nsMAC, packet.AddrFrom4([4]byte{}), remote), false},
	}
	for _, tt := range tests {
		r := NewResponder(gwMAC, gw)
		r.AnswerAllBut(guestIP)
		out := make([]byte, 100)
		if n := r.Handle(tt.p, out); (n > 0) != tt.answer {
			t.Errorf("%s: answered = %v, want %v", tt.name, n > 0, tt.answer)
		}
	}
}
