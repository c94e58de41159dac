package pasta

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strconv"
)

// Socket states in /proc/net/{tcp,udp}[6] (include/net/tcp_states.h).
const (
	stateListen = 0x0A // TCP_LISTEN: a listening TCP socket
	stateClose  = 0x07 // TCP_CLOSE: an unconnected UDP socket
)

// BoundPorts adds to ports the ports that a /proc/net/tcp, tcp6, udp or
// udp6 file lists as bound for incoming traffic: listening TCP sockets
// (udp false), or unconnected UDP sockets (udp true). Sockets bound to a
// loopback address are left out: nothing from outside the namespace can
// reach them through its tap. Lines that do not parse are skipped; the
// file is the kernel's, but it is read from a namespace nsgate does not
// trust, so nothing in it is taken on faith.
func BoundPorts(file []byte, udp bool, ports map[uint16]bool) {
	want := byte(stateListen)
	if udp {
		want = stateClose
	}
	for line := range bytes.SplitSeq(file, []byte("\n")) {
		f := bytes.Fields(line)
		// sl local_address rem_address st ...
		if len(f) < 4 || !bytes.HasSuffix(f[0], []byte(":")) {
			continue
		}
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if err != nil || byte(st) != want {
			continue
		}
		addr, port, ok := hexAddrPort(f[1])
		if !ok || port == 0 || addr.IsLoopback() {
			continue
		}
		if udp {
			if _, rport, ok := hexAddrPort(f[2]); !ok || rport != 0 {
				continue // connected: a client, not a server
			}
		}
		ports[port] = true
	}
}

// hexAddrPort decodes /proc/net's ADDR:PORT, where ADDR is the address as
// the kernel's 32-bit words in host (little-endian) order and PORT is big
// hexadecimal.
func hexAddrPort(b []byte) (netip.Addr, uint16, bool) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.Addr{}, 0, false
	}
	p, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	var raw [16]byte
	h := b[:i]
	if len(h) != 8 && len(h) != 32 {
		return netip.Addr{}, 0, false
	}
	n, err := hex.Decode(raw[:], h)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	for w := 0; w < n; w += 4 { // each word from little-endian
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	if n == 4 {
		return netip.AddrFrom4([4]byte(raw[:4])), uint16(p), true
	}
	return netip.AddrFrom16(raw).Unmap(), uint16(p), true
}
