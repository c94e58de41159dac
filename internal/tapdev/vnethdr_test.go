package tapdev

import (
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestVirtioNetHdr: the header round-trips field by field, a short buffer is
// an error either way, and Write says what its Offload asks (and only
// that), over stale bytes in the header's room.
func TestVirtioNetHdr(t *testing.T) {
	in := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: 3, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16, NumBuffers: 1}
	b := make([]byte, VnetHdrLen)
	if err := in.Encode(b); err != nil {
		t.Fatal(err)
	}
	var out VirtioNetHdr
	if err := out.Decode(b); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
	}
	if err := out.Decode(b[:VnetHdrLen-1]); err == nil {
		t.Fatal("Decode of a short header succeeded")
	}
	if err := in.Encode(b[:3]); err == nil {
		t.Fatal("Encode into a short buffer succeeded")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	dev, err := NewDevice(fds[0], VnetHdrLen)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for _, c := range []struct {
		o    packet.Offload
		want VirtioNetHdr
	}{
		{packet.Offload{CsumStart: 34, CsumOffset: 16}, VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}},
		{packet.Offload{}, VirtioNetHdr{}},
		{packet.Offload{CsumStart: 34, CsumOffset: 16, GSO: packet.GSOTCPv4, GSOSize: 1460, HdrLen: 54},
			VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: 1, HdrLen: 54, GSOSize: 1460, CsumStart: 34, CsumOffset: 16}},
	} {
		frame := make([]byte, VnetHdrLen+60)
		for i := range frame[:VnetHdrLen] {
			frame[i] = 0xee // stale bytes: Write must overwrite them
		}
		if err := dev.Write(frame, c.o); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(frame))
		if _, err := unix.Read(fds[1], got); err != nil {
			t.Fatal(err)
		}
		var h VirtioNetHdr
		h.Decode(got)
		if h != c.want {
			t.Fatalf("Write(%+v) sent header %+v, want %+v", c.o, h, c.want)
		}
	}
	// Without a header there is no way to ask for an offload.
	plain, err := NewDevice(fds[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Write(make([]byte, 60), packet.Offload{CsumStart: 34, CsumOffset: 16}); err == nil {
		t.Fatal("an offload on a device without a header was accepted")
	}
}

// TestOffloadChecks: every hostile field of a header from the namespace is
// an error naming it, and a good header says what it asks.
func TestOffloadChecks(t *testing.T) {
	const n = 1514
	tso := VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: uint8(packet.GSOTCPv4), HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	for _, c := range []struct {
		name string
		h    VirtioNetHdr
		want error
	}{
		{"zero", VirtioNetHdr{}, nil},
		{"data valid", VirtioNetHdr{Flags: VirtioNetHdrFDataValid}, nil},
		{"tso", tso, nil},
		{"uso", VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, GSOType: uint8(packet.GSOUDPL4), HdrLen: 42, GSOSize: 1000, CsumStart: 34, CsumOffset: 6}, nil},
		{"unknown flag", VirtioNetHdr{Flags: 4}, ErrVnetFlags},
		{"csum start in the Ethernet header", VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 2, CsumOffset: 0}, ErrVnetCsum},
		{"csum field past the end", VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: n - 10, CsumOffset: 9}, ErrVnetCsum},
		{"csum start far past the end", VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: 65535, CsumOffset: 65535}, ErrVnetCsum},
		{"legacy UFO", VirtioNetHdr{GSOType: 3, GSOSize: 1000}, ErrVnetGSOType},
		{"ECN never offered", VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4) | VirtioNetHdrGSOECN, GSOSize: 1448}, ErrVnetGSOType},
		{"unknown type", VirtioNetHdr{GSOType: 9, GSOSize: 1448}, ErrVnetGSOType},
		{"gso size 0", VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4)}, ErrVnetGSOSize},
		{"gso size past the frame", VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), GSOSize: n + 1}, ErrVnetGSOSize},
		{"hdr len past the frame", VirtioNetHdr{GSOType: uint8(packet.GSOTCPv4), GSOSize: 1448, HdrLen: n + 1}, ErrVnetHdrLen},
	} {
		o, err := c.h.Offload(n)
		if err != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
			continue
		}
		if err == nil && (o.GSO != packet.GSOType(c.h.GSOType) || o.GSOSize != c.h.GSOSize ||
			(c.h.Flags&VirtioNetHdrFNeedsCsum != 0) != (o.CsumStart != 0)) {
			t.Errorf("%s: %+v from %+v", c.name, o, c.h)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = tso.Offload(n) }); a != 0 {
		t.Fatalf("Offload allocates %v times", a)
	}
}
