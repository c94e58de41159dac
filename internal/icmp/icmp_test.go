package icmp

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

var gwMAC = packet.MAC{0x52, 0x55, 10, 0, 2, 2}

func request(typ uint8, payload string) *packet.Parsed {
	m := make([]byte, packet.ICMPEchoLen+len(payload))
	binary.BigEndian.PutUint16(m[4:], 0xbeef)
	binary.BigEndian.PutUint16(m[6:], 42)
	copy(m[8:], payload)
	packet.ICMP(m).SetTypeCode(typ, 0)
	f := make([]byte, packet.EtherLen+packet.IPv4Len+len(m))
	packet.Ether(f).SetHeader(gwMAC, packet.MAC{2, 0, 0, 0, 0, 1}, packet.EtherTypeIPv4)
	copy(f[packet.EtherLen+packet.IPv4Len:], m)
	packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + len(m), ID: 9, Protocol: packet.ProtoICMP,
		Src: packet.AddrFrom4([4]byte{10, 0, 2, 100}), Dst: packet.AddrFrom4([4]byte{10, 0, 2, 2})})
	var p packet.Parsed
	if err := p.Decode(f); err != nil {
		panic(err)
	}
	return &p
}

func TestEchoReply(t *testing.T) {
	p := request(packet.ICMPEchoRequest, "abcdefgh0123456789")
	out := make([]byte, 1600)
	n := EchoReply(p, gwMAC, out)
	if n == 0 {
		t.Fatal("no reply")
	}
	var r packet.Parsed
	if err := r.Decode(out[:n]); err != nil { // checks the IPv4 and ICMP checksums
		t.Fatalf("reply does not decode: %v", err)
	}
	if r.DstMAC != p.SrcMAC || r.SrcMAC != gwMAC || r.Src != p.Dst || r.Dst != p.Src {
		t.Errorf("reply addressed %v/%v -> %v/%v", r.SrcMAC, r.Src, r.DstMAC, r.Dst)
	}
	if r.ICMP.Type() != packet.ICMPEchoReply || r.ICMP.EchoID() != 0xbeef || r.ICMP.EchoSeq() != 42 ||
		!bytes.Equal(r.ICMP[8:], []byte("abcdefgh0123456789")) {
		t.Errorf("reply body wrong: type %d id %#x seq %d payload %q", r.ICMP.Type(), r.ICMP.EchoID(), r.ICMP.EchoSeq(), r.ICMP[8:])
	}
}

func TestEchoReplyIgnores(t *testing.T) {
	out := make([]byte, 1600)
	if n := EchoReply(request(packet.ICMPEchoReply, "x"), gwMAC, out); n != 0 {
		t.Error("answered an echo reply")
	}
	if n := EchoReply(request(packet.ICMPUnreachable, "x"), gwMAC, out); n != 0 {
		t.Error("answered a destination unreachable")
	}
	if n := EchoReply(request(packet.ICMPEchoRequest, "x"), gwMAC, out[:30]); n != 0 {
		t.Error("wrote past a short buffer")
	}
	p := request(packet.ICMPEchoRequest, "x")
	p.Src = packet.Addr{}
	if n := EchoReply(p, gwMAC, out); n != 0 {
		t.Error("answered towards 0.0.0.0")
	}
}

func TestEchoReplyAllocs(t *testing.T) {
	p := request(packet.ICMPEchoRequest, "payload")
	out := make([]byte, 1600)
	if n := testing.AllocsPerRun(100, func() { EchoReply(p, gwMAC, out) }); n != 0 {
		t.Fatalf("EchoReply allocates %v times", n)
	}
}
