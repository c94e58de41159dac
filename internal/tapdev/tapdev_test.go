//go:build integration

package tapdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/testnet"
	"golang.org/x/sys/unix"
)

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, out)
	}
	return nil
}

// TestKernelFrames opens a tap in a fresh namespace and trades frames with
// the kernel: a datagram the kernel sends must decode (its checksums agree
// with ours), and an echo request nsgate-style code builds must be answered
// by the kernel (ours agree with its).
func TestKernelFrames(t *testing.T) {
	err := testnet.InNewNetns(func() error {
		fd, _, err := Open("tapt0")
		if err != nil {
			return err
		}
		dev, err := NewDevice(fd, VnetHdrLen)
		if err != nil {
			return err
		}
		defer dev.Close()
		if sz, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ); err != nil || sz != VnetHdrLen {
			return fmt.Errorf("vnet header size %d, %v", sz, err)
		}
		for _, args := range [][]string{
			{"link", "set", "tapt0", "up"},
			{"addr", "add", "10.9.0.1/24", "dev", "tapt0"},
			{"neigh", "add", "10.9.0.2", "lladdr", "02:00:00:00:00:02", "dev", "tapt0"},
		} {
			if err := ip(args...); err != nil {
				return err
			}
		}
		// Kernel → tap: a UDP datagram to 10.9.0.2:9.
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		if err := unix.Sendto(s, []byte("hello tap"), 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 9, 0, 2}}); err != nil {
			return err
		}
		buf := make([]byte, VnetHdrLen+MaxFrame)
		var p packet.Parsed
		deadline := time.Now().Add(3 * time.Second)
		for {
			if time.Now().After(deadline) {
				return errors.New("the kernel's datagram never reached the tap")
			}
			n, err := dev.Read(buf)
			if err == unix.EAGAIN {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			// With checksum offload the kernel leaves the UDP checksum
			// partial and says where: complete it as a NIC would, and the
			// sum must then verify.
			var h VirtioNetHdr
			h.Decode(buf)
			o, err := h.Offload(n)
			if err != nil {
				return fmt.Errorf("the kernel's own vnet header: %w", err)
			}
			f := buf[VnetHdrLen : VnetHdrLen+n]
			if err := o.Complete(f); err != nil {
				return err
			}
			if p.Decode(f) == nil && p.UDP != nil && string(p.Payload) == "hello tap" {
				if o.CsumStart != packet.EtherLen+packet.IPv4Len || o.CsumOffset != packet.UDPChecksumOffset {
					return fmt.Errorf("the kernel's datagram came with offload %+v, want a partial UDP checksum (the tap offers checksum offload)", o)
				}
				break // decoded, checksums verified: ours agree with the kernel's
			}
		}
		kernelMAC := p.SrcMAC

		// Tap → kernel: an echo request built with package packet.
		m := make([]byte, packet.ICMPEchoLen+8)
		binary.BigEndian.PutUint16(m[4:], 0x4242)
		copy(m[8:], "nsgate!!")
		packet.ICMP(m).SetTypeCode(packet.ICMPEchoRequest, 0)
		out := make([]byte, VnetHdrLen+packet.EtherLen+packet.IPv4Len+len(m))
		f := out[VnetHdrLen:]
		packet.Ether(f).SetHeader(kernelMAC, packet.MAC{2, 0, 0, 0, 0, 2}, packet.EtherTypeIPv4)
		copy(f[packet.EtherLen+packet.IPv4Len:], m)
		packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + len(m), ID: 1, Protocol: packet.ProtoICMP,
			Src: packet.AddrFrom4([4]byte{10, 9, 0, 2}), Dst: packet.AddrFrom4([4]byte{10, 9, 0, 1})})
		if err := dev.Write(out, packet.Offload{}); err != nil {
			return err
		}
		for {
			if time.Now().After(deadline) {
				return errors.New("the kernel did not answer our echo request: checksum or framing wrong")
			}
			n, err := dev.Read(buf)
			if err == unix.EAGAIN {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			if p.Decode(buf[VnetHdrLen:VnetHdrLen+n]) == nil && p.ICMP != nil && p.ICMP.Type() == packet.ICMPEchoReply && p.ICMP.EchoID() == 0x4242 {
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAttachAndErrors(t *testing.T) {
	err := testnet.InNewNetns(func() error {
		// rootlesskit's case: the tap exists (persistent) before nsgate.
		if err := ip("tuntap", "add", "tapx", "mode", "tap"); err != nil {
			return err
		}
		fd, _, err := Open("tapx")
		if err != nil {
			return fmt.Errorf("attach to an existing tap: %w", err)
		}
		// A second opener is refused while the first holds it.
		if fd2, _, err := Open("tapx"); err == nil {
			unix.Close(fd2)
			unix.Close(fd)
			return errors.New("a second open of a busy tap succeeded")
		}
		// The namespace's MAC, read through the fd.
		mac, err := HardwareAddr(fd)
		ifc, ierr := net.InterfaceByName("tapx")
		if err != nil || ierr != nil || net.HardwareAddr(mac[:]).String() != ifc.HardwareAddr.String() {
			unix.Close(fd)
			return fmt.Errorf("HardwareAddr = %x, %v; the link has %v (%v)", mac, err, ifc, ierr)
		}
		unix.Close(fd)
		if _, err := net.InterfaceByName("tapx"); err != nil {
			return fmt.Errorf("persistent tap gone after nsgate closed it: %w", err)
		}
		// A tun (L3) device of the name cannot be attached as a tap.
		if err := ip("tuntap", "add", "tunx", "mode", "tun"); err != nil {
			return err
		}
		if fd, _, err := Open("tunx"); err == nil {
			unix.Close(fd)
			return errors.New("attached to a tun device as a tap")
		}
		// A tap nsgate creates is not persistent.
		fd, _, err = Open("tapnew")
		if err != nil {
			return err
		}
		unix.Close(fd)
		if _, err := net.InterfaceByName("tapnew"); err == nil {
			return errors.New("tap created by nsgate survived its close")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
