package tcp

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
)

// SYN cookies: what lets a legitimate connection through a SYN flood.
//
// At the half-open cap, a SYN no longer opens a flow. It is answered with
// a SYN-ACK whose sequence number is a cookie, as the kernel does
// (tcp_syncookies): a keyed hash of the flow, the namespace's initial
// sequence number and the time, with the MSS the namespace offered in its
// low 3 bits (cookieMSS). Nothing is kept and no socket is opened, so a
// flood costs one frame each way: the SYN-ACK, and the RST the
// namespace's kernel answers it with, since no socket there sent that SYN.
// That is what keeps nsgate reading the tap as fast as the flood fills it.
// A SYN made by a socket is answered with an ACK, which carries the cookie
// back: only then is the host connection opened, and when it completes,
// the flow is established at once (conn.cookie).
//
// What a cookie cannot carry is lost, as with the kernel's cookies without
// timestamps: window scaling and SACK. Connections opened this way during
// a flood work at up to 64 KiB in flight. If the host refuses them, the
// namespace sees a reset, not a refusal: it believed the connection open.
// Data sent with the ACK before the host connect completes is dropped, and
// the namespace sends it again.

// cookieMSS are the MSS values a cookie can carry: the largest not above
// what the namespace offered is used.
var cookieMSS = [8]int{216, 536, 1220, 1440, 1460, 8960, 16384, 65483}

// cookiePeriod is how long a cookie stays good: one to two periods.
const cookiePeriod = 64 * time.Second

// cookie returns the cookie of flow k with the namespace's initial sequence
// number isn, at time slot slot, less its MSS bits.
func (t *Table) cookie(k flow.Key, isn, slot uint32) uint32 {
	var b [2*16 + 2*2 + 4 + 4]byte
	copy(b[0:], k.NS[:])
	copy(b[16:], k.Dst[:])
	binary.BigEndian.PutUint16(b[32:], k.NSPort)
	binary.BigEndian.PutUint16(b[34:], k.DstPort)
	binary.BigEndian.PutUint32(b[36:], isn)
	binary.BigEndian.PutUint32(b[40:], slot)
	return uint32(maphash.Bytes(t.cookieSeed, b[:])) &^ 7
}

func (t *Table) cookieSlot() uint32 { return uint32(t.env.Now() / cookiePeriod) }

// sendCookie answers the SYN p of flow k with a cookie SYN-ACK.
func (t *Table) sendCookie(p *packet.Parsed, k flow.Key) {
	seg := p.TCP
	mss := t.mss(seg.SynOptions(), k.NS)
	i := len(cookieMSS) - 1
	for i > 0 && cookieMSS[i] > mss {
		i--
	}
	c := conn{key: k, nsMAC: p.SrcMAC, fd: -1, rcvNxt: seg.Seq() + 1}
	t.sendCtl(&c, packet.TCPSyn|packet.TCPAck, t.cookie(k, seg.Seq(), t.cookieSlot())|uint32(i))
	t.Cookies++
	t.lastCookie = t.env.Now()
	t.pressure(t.lastCookie)
}

// checkCookie returns the MSS of the cookie the ACK p of flow k carries,
// if it is one of nsgate's, from this time slot or the one before.
func (t *Table) checkCookie(p *packet.Parsed, k flow.Key) (int, bool) {
	if t.lastCookie == 0 || t.env.Now()-t.lastCookie > 2*cookiePeriod {
		return 0, false // none sent lately: spend no hashing on stray ACKs
	}
	seg := p.TCP
	iss, isn := seg.Ack()-1, seg.Seq()-1
	slot := t.cookieSlot()
	for _, s := range [2]uint32{slot, slot - 1} {
		if t.cookie(k, isn, s) == iss&^7 {
			return cookieMSS[iss&7], true
		}
	}
	return 0, false
}
