// Package dns relays the namespace's DNS queries (to network+3, or the IPv6
// prefix's ::3, port 53) to
// the nameservers of the host's /etc/resolv.conf, in order, failing over on
// refusal or silence. nsgate runs on the host side, so a loopback resolver
// (127.0.0.53, 127.0.0.1) works.
//
// This is control plane: each query is relayed by a goroutine with the
// standard library, and the answer is handed back to the event loop, which
// frames it. Queries are relayed byte for byte (the ID and everything else
// stay as the client sent them); a query nsgate cannot relay gets SERVFAIL
// at once rather than a timeout.
package dns

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

// HeaderLen is the length of a DNS message header.
const HeaderLen = 12

// PerServerTimeout is how long a nameserver may stay silent before the next
// one is asked.
var PerServerTimeout = 2 * time.Second

// MaxInFlight bounds the queries relayed at once; more are dropped (the
// client retries), so a flood cannot spawn unbounded goroutines.
const MaxInFlight = 512

// ReadResolvConf returns the nameservers of a resolv.conf, IPv4 and IPv6,
// in order. A link-local IPv6 nameserver keeps its zone (fe80::1%eth0).
func ReadResolvConf(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil && !a.IsUnspecified() && !a.IsMulticast() {
				out = append(out, a.Unmap())
			}
		}
	}
	return out, sc.Err()
}

// Client identifies who asked, so the loop can address the answer.
type Client struct {
	IP   packet.Addr
	Port uint16
	MAC  packet.MAC
}

// Answer is a reply for the loop to send.
type Answer struct {
	Client Client
	Msg    []byte
}

// Relay forwards queries, one goroutine per query in flight (at most
// MaxInFlight). Close stops them and waits for them, as wireguard-go's
// Device.Close waits for its goroutines.
type Relay struct {
	servers  []netip.Addr
	answers  chan Answer
	wake     func()
	inFlight atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	conns    map[*net.UDPConn]struct{} // sockets of queries in flight: Close cuts them short
	port     uint16                    // the nameservers' port: 53 (tests change it)
}

// NewRelay relays to servers (port 53). wake is called after each answer is
// queued (the loop's eventfd).
func NewRelay(servers []netip.Addr, wake func()) *Relay {
	return &Relay{servers: servers, answers: make(chan Answer, MaxInFlight), wake: wake, conns: make(map[*net.UDPConn]struct{}), port: 53}
}

// Close ends the queries in flight (their answers are dropped) and waits
// for their goroutines; later queries are dropped. wake is not called once
// Close has returned.
func (r *Relay) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// track adds (or, with add false, removes) a query's socket; it reports
// false if the relay is closed.
func (r *Relay) track(c *net.UDPConn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.conns, c)
		return true
	}
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

// Servers returns the nameservers in use.
func (r *Relay) Servers() []netip.Addr { return r.servers }

// Answers is where answers arrive; the loop drains it when woken.
func (r *Relay) Answers() <-chan Answer { return r.answers }

// Query relays a query (copied: the caller's buffer is a frame buffer). A
// message too short to be a query is dropped.
func (r *Relay) Query(c Client, query []byte) {
	if len(query) < HeaderLen || query[2]&0x80 != 0 { // too short, or a response
		return
	}
	if r.inFlight.Add(1) > MaxInFlight {
		r.inFlight.Add(-1)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.inFlight.Add(-1)
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	q := append([]byte(nil), query...)
	go func() {
		defer r.wg.Done()
		defer r.inFlight.Add(-1)
		msg := r.exchange(q)
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return
		}
		if msg == nil {
			msg = ServFail(q)
		}
		select {
		case r.answers <- Answer{Client: c, Msg: msg}:
			r.wake()
		default: // the loop has fallen behind by MaxInFlight answers: drop it, as a network would
		}
	}()
}

// exchange asks each nameserver in turn and returns the first answer with
// the query's ID, or nil.
func (r *Relay) exchange(q []byte) []byte {
	buf := make([]byte, 65535)
	for _, s := range r.servers {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s, r.port)))
		if err != nil {
			continue
		}
		if !r.track(conn, true) {
			conn.Close()
			return nil
		}
		msg := r.ask(conn, q, buf)
		r.track(conn, false)
		conn.Close()
		if msg != nil {
			return msg
		}
	}
	return nil
}

// ask sends q on conn and returns the first answer with its ID, or nil on
// timeout, refusal or Close.
func (r *Relay) ask(conn *net.UDPConn, q, buf []byte) []byte {
	conn.SetDeadline(time.Now().Add(PerServerTimeout))
	if _, err := conn.Write(q); err != nil {
		return nil
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil // refused (ICMP), silent or closed: next server
		}
		if n >= HeaderLen && buf[0] == q[0] && buf[1] == q[1] && buf[2]&0x80 != 0 {
			return append([]byte(nil), buf[:n]...)
		}
	}
}

// ServFail builds a SERVFAIL response to query: the header with QR set,
// RCODE 2, the question section kept when it parses, nothing else.
func ServFail(query []byte) []byte {
	if len(query) < HeaderLen {
		return nil
	}
	qlen := questionLen(query)
	out := make([]byte, HeaderLen+qlen)
	copy(out, query[:HeaderLen+qlen])
	out[2] = 0x80 | query[2]&0x79 // QR, opcode and RD kept; AA, TC cleared
	out[3] = 0x80 | 2             // RA, SERVFAIL
	qd := uint16(0)
	if qlen > 0 {
		qd = 1
	}
	binary.BigEndian.PutUint16(out[4:6], qd)
	clear(out[6:12]) // no answer, authority or additional records
	return out
}

// questionLen returns the length of the first question of query if the
// header says there is exactly one and it is well formed, else 0.
func questionLen(q []byte) int {
	if binary.BigEndian.Uint16(q[4:6]) != 1 {
		return 0
	}
	i := HeaderLen
	for {
		if i >= len(q) {
			return 0
		}
		l := int(q[i])
		if l == 0 {
			i++
			break
		}
		if l&0xc0 != 0 || i+1+l > len(q) { // no compression in a question; no overrun
			return 0
		}
		i += 1 + l
	}
	if i+4 > len(q) {
		return 0
	}
	return i + 4 - HeaderLen
}
