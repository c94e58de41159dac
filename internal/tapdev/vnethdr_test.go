package tapdev

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestVirtioNetHdr: the header round-trips field by field, a short buffer is
// an error either way, and Write marks a partial checksum (and only then).
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
	for _, c := range []struct{ start, off uint16 }{{34, 16}, {0, 0}} {
		frame := make([]byte, VnetHdrLen+60)
		for i := range frame[:VnetHdrLen] {
			frame[i] = 0xee // stale bytes: Write must overwrite them
		}
		if err := dev.Write(frame, c.start, c.off); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(frame))
		if _, err := unix.Read(fds[1], got); err != nil {
			t.Fatal(err)
		}
		var h VirtioNetHdr
		h.Decode(got)
		want := VirtioNetHdr{}
		if c.start != 0 {
			want = VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: c.start, CsumOffset: c.off}
		}
		if h != want {
			t.Fatalf("Write(csum %d/%d) sent header %+v, want %+v", c.start, c.off, h, want)
		}
	}
}
