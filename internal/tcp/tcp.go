// Package tcp reflects the namespace's TCP connections onto host sockets.
//
// Each connection the namespace opens is carried by one ordinary host
// SOCK_STREAM socket, and nsgate re-implements no TCP stack: the host kernel
// does congestion control and retransmission on the host leg, the
// namespace's kernel on the tap leg, and nsgate keeps their sequence spaces
// in step:
//
//   - namespace → host: a segment's payload is written to the socket, and
//     only what the socket accepted is acknowledged; the window advertised is
//     the socket's free send space, and when the socket was full, the window
//     update goes out as soon as epoll reports it writable.
//   - host → namespace: data is read with MSG_PEEK at SO_PEEK_OFF, so the
//     socket's receive queue is the retransmission buffer; bytes are
//     discarded (MSG_TRUNC) only when the namespace acknowledges them, and a
//     retransmission rewinds the peek offset.
//
// Before Linux 6.9, TCP sockets refuse SO_PEEK_OFF (Config.NoPeekOff, from
// the probe at start; NSGATE_NO_PEEK_OFF=1 forces it). Then nsgate reads the
// socket for real and keeps its own copy of the bytes sent and not yet
// acknowledged, a ring per flow (unacked.go): 16 KiB at first, doubling to
// 4 MiB while the namespace's window has room, 256 MiB for all flows
// together, given back when the flow ends or sits empty at the idle sweep.
// Retransmissions come from the ring; an ACK drops bytes from it. The host
// socket still paces the host sender: nsgate reads only what the
// namespace's window and the ring admit.
//
// The other way, pasta's before 6.9, peeks from the head of the queue with a
// first iovec that swallows the bytes already in flight: every segment then
// copies the whole flight again. Measured in one netbench --quick run at
// MTU 65520 (host → namespace, b): the copy 14.0 Gbit/s at 0.47 CPU s/GB,
// the skip-peek 2.6 Gbit/s at 3.32 CPU s/GB; SO_PEEK_OFF 8.0 at 0.50 in the
// same (noisy) run. The copy costs memory instead: up to 4 MiB per busy
// flow, nothing per idle one.
//
// Frames on the tap are not segments. The tap offers TSO (tapdev), so the
// namespace's kernel hands over super-frames of up to 64 KiB whatever its
// MTU, and their payload goes to the socket in one write like any other.
// The other way (Config.GSO), push reads up to 64 KiB of whole segments
// and sends them as one frame marked for segmentation at the connection's
// MSS: the namespace's kernel takes it whole for local delivery, and cuts
// it only to forward it. Sequence numbers, windows and ACKs count bytes,
// so nothing else changes: an ACK may cover a frame in part, and a
// retransmission may cut a frame where the first did not. At MTU 1500 this
// is the difference between 1 and 10 Gbit/s (the README's figures).
//
// Requests and answers. Most of what containers do is small exchanges,
// and there nsgate's cost is system calls and frames, not bytes. Four
// things keep them few (measured per 1-byte round trip: 13 calls and 2
// frames to the namespace, from 40 calls and 2 frames):
//
//   - Host sockets are watched edge-triggered (conn.go's update). The bytes
//     of an answer stay in the socket until the namespace acknowledges
//     them, so a level-triggered EPOLLIN fired on every wait until then:
//     15 wasted waits, window queries and peeks per round trip. push reads
//     only while the socket may hold unsent bytes (conn.avail: set by an
//     edge, cleared when a read comes back short).
//   - The window comes from an estimate (segment.go's sendMem): SO_MEMINFO
//     is asked once half the send buffer seems spent, not for every ACK.
//   - The ACK of a small request is held while the engine polls for the
//     answer (Flush, Config.AckHold), which then carries it: one frame to
//     the namespace per exchange, not two, and one less for its kernel.
//   - The engine polls for events before it sleeps while traffic is
//     request/response (Interactive): waking costs more than the answer
//     takes to come.
//
// Bulk senders. What a sender pays per segment and per ACK matters most
// where the sender is slow: a VM under TCG, whose rate is its CPU's. So
// nsgate offers an MSS in whole pages (ourMSS: 61,440 at MTU 65520, as
// passt offers), which a sender without scatter-gather builds in a 64 KiB
// buffer rather than a 128 KiB one, and it acknowledges every second
// segment, as a receiver's delayed ACK does (Flush, Config.DelayedAck), not
// every one. make bench-vm, VM → host: 0.86× passt before, 1.03× after.
//
// Like any receiver, nsgate keeps segments that arrive beyond a gap (loss or
// reordering on the tap leg) and tells the namespace about them with SACK,
// so that recovery takes a round trip, not a retransmission timeout. That
// copy happens only on the loss path.
//
// # States and events
//
// A connection is in one of four states:
//
//	state        entered on                             left on
//	connecting   the namespace's SYN, or a SYN cookie's  EPOLLOUT: connected, SYN-ACK sent
//	             ACK; connect() begins                  (a cookie's: established at once);
//	                                                    connect error: RST (refused)
//	synAckSent   connect() completed                    ACK of the SYN-ACK: established;
//	                                                    RTO: SYN-ACK again, 5 times (once
//	                                                    under SYN pressure), then reset;
//	                                                    RST: gone
//	synSent      Accept: a forward's client; SYN sent   SYN-ACK: established (ACK sent);
//	                                                    RST: refused; 6 RTOs: client reset
//	established  the handshake completed                both FINs sent and acknowledged: gone;
//	                                                    RST, socket error, 12 RTOs, idle: reset
//
// Flags on the connection carry the rest:
//
//	flag                   set when                              cleared when
//	nsFin                  the namespace's FIN was passed on     never: a FIN comes once
//	hostEOF                the host socket read EOF              never
//	finSent                nsgate's FIN went to the namespace    rewind (the FIN goes again)
//	avail                  epoll reported new bytes, the host's  push finds the socket drained
//	                       FIN or a reset; a rewind              (after the FIN: at EOF)
//	rdhup                  epoll reported the host's FIN         never
//	sendBlocked, dropped   the socket refused bytes              EPOLLOUT (window update, dup ACKs)
//	wndLow                 a small window was advertised         EPOLLOUT, or the recheck
//	wndRecheck             EPOLLOUT came, window still shut      the timer finds it open
//	outArmed               EPOLLOUT set in the interest          EPOLLOUT fired
//	ackPending, inAckList  an ACK is owed                        Flush, or any ACK sent
//	ackKind held, delayed  the ACK owed is for small segments,   the ACK sent, or a segment
//	                       or for one segment: Flush may wait    that needs one at once
//	ooo                    a segment arrived beyond a gap        the gap fills (drainOOO)
//	sack, wscale           the SYN (or SYN-ACK) offered them     never
//	inbound                Accept opened the connection          never
//	half                   open: the handshake is under way      established, or gone (budget.go)
//	loaded                 opened, or caught, under SYN pressure never: less patience
//	cookie                 a SYN cookie's ACK opened it          never
//
// # Files
//
// receive.go carries namespace → host (segments, ACKs, reassembly);
// send.go host → namespace (push, retransmission, the unacked ring of
// unacked.go); segment.go builds the frames; conn.go opens, watches and
// closes connections, on sockets pool.go makes ahead of need; inbound.go
// opens forwarded ones; timers.go runs retransmission, window rechecks and
// the idle scan; budget.go caps the flows in their handshake and shortens
// them under a SYN flood, and cookie.go answers SYNs past the cap with SYN
// cookies; sock.go holds the raw socket calls.
//
// The Table is owned by the engine's event loop: no locks, no goroutines,
// and no allocation per segment once a connection is set up.
package tcp

import (
	"hash/maphash"
	"time"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
)

// Config is what the translator needs to know of the network.
type Config struct {
	GatewayMAC packet.MAC
	NAT        nat.Mapper // which destinations may leave, and where to
	MTU        int
	MaxFlows   int // 0: DefaultMaxFlows
	// MaxHalfOpen caps the flows in their handshake (budget.go; 0:
	// flow.HalfOpenFor(MaxFlows)).
	MaxHalfOpen int
	// Budget, if set, is the flow budget shared with the other tables.
	Budget      *flow.Budget
	IdleTimeout time.Duration // 0: DefaultIdleTimeout
	// DNS and DNS6 are the relay addresses; connections to their port 53
	// go to DNSServers in order, the next one when a connect fails, of
	// either family. Zero: none.
	DNS, DNS6  packet.Addr
	DNSServers []packet.Addr
	// Outbound holds the source addresses of every connection's socket, by
	// family (--outbound-addr, --outbound-addr6).
	Outbound flow.Outbound
	// NoPeekOff says the kernel's TCP sockets lack SO_PEEK_OFF (before
	// Linux 6.9; kernel.Probe): host data is then read off the socket and
	// a copy of the unacknowledged bytes is kept (unacked.go).
	NoPeekOff bool
	// AckHold is how long Flush(true) may keep back the ACK of a small
	// segment, for the answer to carry it (0: never).
	AckHold time.Duration
	// DelayedAck is how long Flush may keep back the ACK of a single
	// segment, for the next one to share it (0: never; see Flush).
	DelayedAck time.Duration
	// GSO lets data to the namespace go in super-frames of up to 64 KiB,
	// marked for segmentation at the connection's MSS (TSO the other way
	// round): a tap with a vnet header takes them, a VM's socket does not.
	GSO bool
}

// Defaults.
const (
	DefaultMaxFlows    = 65536
	DefaultIdleTimeout = 2 * time.Hour // established, no traffic either way
	DefaultDelayedAck  = 5 * time.Millisecond
	closingTimeout     = 60 * time.Second // handshakes and closes that stall
	rtoMin             = 200 * time.Millisecond
	rtoMax             = 60 * time.Second
	maxRetries         = 12
	ourWScale          = 7 // windows up to 8 MiB: above tcp_wmem's 4 MiB
)

type state uint8

const (
	stConnecting  state = iota + 1 // SYN received, host connect() under way
	stSynAckSent                   // SYN-ACK sent, waiting for the namespace's ACK
	stEstablished                  // both ways open, or half-closed
	stSynSent                      // forwarded: SYN sent to the namespace, waiting for its SYN-ACK
)

// synRetries bounds the SYNs sent for a forwarded connection (about 25 s,
// as the kernel's tcp_syn_retries) before its client is reset.
const synRetries = 6

// oooSeg is a segment that arrived beyond a gap, kept until the gap fills:
// without it, everything the namespace sent after a lost segment would be
// lost too, and a sender without SACK waits for its retransmission timer.
type oooSeg struct {
	seq  uint32
	data []byte
}

// maxOOOBytes bounds the out-of-order data kept per flow.
const maxOOOBytes = 4 << 20

// conn is one connection: the namespace's side (key.NS) and the host
// socket fd that carries it.
type conn struct {
	key     flow.Key
	fd      int
	state   state
	nsMAC   packet.MAC
	events  uint32 // epoll interest now
	watched bool   // registered with epoll
	// outArmed: EPOLLOUT was set in the interest since it last fired, so
	// its edge will come (update).
	outArmed bool

	// Namespace → host.
	rcvNxt      uint32  // next sequence number expected from the namespace
	nsFin       bool    // the namespace's FIN was passed on (shutdown(SHUT_WR))
	sendBlocked bool    // the socket refused bytes: waiting for EPOLLOUT
	mem         sendMem // the send buffer's free space, as last measured (segment.go)
	wndLow      bool    // a small window was advertised: update on EPOLLOUT
	wndRecheck  bool    // EPOLLOUT came but the window stayed shut: the timer rechecks
	maxAdv      int     // largest window advertised, in bytes
	lastAdv     uint16  // the window field of the last segment sent
	ooo         []oooSeg
	oooBytes    int
	oooLast     uint32 // sequence number of the latest segment kept
	sack        bool   // the namespace offered SACK: blocks describe ooo
	dropped     bool   // bytes were refused and must be retransmitted by the namespace
	ackPending  bool
	inAckList   bool
	ackKind     ackKind       // how long Flush may keep the ACK owed back
	ackSince    time.Duration // when the ACK owed became owed
	ackedTo     uint32        // the acknowledgment number last sent
	rcvMSS      int           // the largest payload the namespace has sent: its segment size
	inbound     bool          // a forwarded connection: nsgate sent the SYN
	half        bool          // counted as half-open (budget.go)
	cookie      bool          // opened by a SYN cookie's ACK: established once connect() completes (cookie.go)
	loaded      bool          // opened while the half-open table was loaded: less patience
	opened      time.Duration
	toHost      uint64 // bytes written to the host socket
	toNS        uint64 // bytes the namespace acknowledged

	// Host → namespace.
	iss      uint32
	sndUna   uint32 // oldest byte the namespace has not acknowledged
	sndNxt   uint32 // next byte to send
	sndWnd   uint32 // the namespace's window, in bytes
	nsWScale uint8
	wscale   bool // window scaling agreed
	mss      int  // largest payload to send to the namespace
	hostEOF  bool // the host closed its side: FIN follows the data
	avail    bool // the socket may hold bytes past sndNxt: push looks (conn.go's update)
	rdhup    bool // epoll reported the host's FIN: a short read is not the end, EOF is
	finSent  bool // FIN sent (sndNxt counts it)
	dupAcks  int
	retries  int
	dnsNext  uint8   // the next nameserver to try if this connect fails
	sent     unacked // NoPeekOff: the bytes sent and not acknowledged
	// acked counts acknowledged bytes still at the head of the socket's
	// queue, for Idle to discard (acked in send.go); inDiscards, that the
	// flow is on Idle's list.
	acked      int
	inDiscards bool
	rto        time.Duration
	rtoAt      time.Duration // 0: no retransmission timer
	lastSeen   time.Duration
}

// Table is the TCP flow table.
type Table struct {
	cfg         Config
	env         flow.Env
	flows       *flow.Table[conn]
	acks        []int32 // flows owing an ACK, sent by Flush
	rechecks    []int32 // flows whose window the timer rechecks (wndRecheck)
	discards    []int32 // flows with acknowledged bytes to discard (Idle)
	rtos        int     // flows with a retransmission timer
	lastRecheck time.Duration
	lastRTOScan time.Duration
	ipID        uint16
	half        int       // half-open flows (budget.go)
	halfQ       []flowRef // half-open flows, oldest first, with stale entries
	halfHead    int       // halfQ[:halfHead] is consumed
	// pressureUntil is when the table stops counting as loaded (budget.go).
	pressureUntil time.Duration
	cookieSeed    maphash.Seed
	lastCookie    time.Duration // when a SYN cookie was last sent (0: never)
	sackBuf       [4]packet.SACKBlock
	// lastSmall and lastBulk are when payload of at most SmallSegment
	// bytes, and of more, last went either way (Interactive).
	lastSmall, lastBulk time.Duration
	sweep               flow.Sweep
	rings               ringPool // NoPeekOff: the flows' unacked rings
	pool                sockPool // spare sockets for new connections (pool.go)
	// Stats. Opened counts both directions; Inbound the forwarded ones.
	// FlowLimit counts connections refused for the flow budget,
	// HalfOpenResets handshakes reset at the half-open cap, Denied
	// connections the egress policy refused.
	Opened, Refused, Resets, Inbound  uint64
	FlowLimit, HalfOpenResets, Denied uint64
	// Cookies counts SYNs answered with a SYN cookie, CookieFlows the
	// connections their ACKs opened.
	Cookies, CookieFlows uint64
}

// New returns an empty table.
func New(cfg Config, env flow.Env) *Table {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHalfOpen <= 0 {
		cfg.MaxHalfOpen = flow.HalfOpenFor(cfg.MaxFlows)
	}
	t := &Table{cfg: cfg, env: env, flows: flow.NewTable(cfg.MaxFlows, conn{fd: -1}), sweep: flow.Sweep{Period: scanPeriod},
		cookieSeed: maphash.MakeSeed()}
	t.flows.SetBudget(cfg.Budget)
	return t
}

// interactiveWindow is how recent Interactive's small exchanges must be,
// and how long a large segment turns it off.
const interactiveWindow = time.Millisecond

// Interactive reports whether the table's traffic at now is request and
// response: small segments went either way within interactiveWindow, and
// no large ones. The engine busy-polls only then.
func (t *Table) Interactive(now time.Duration) bool {
	return t.lastSmall != 0 && now-t.lastSmall < interactiveWindow && (t.lastBulk == 0 || now-t.lastBulk >= interactiveWindow)
}

// moved notes n bytes of payload moved either way at now, for Interactive.
func (t *Table) moved(n int, now time.Duration) {
	if n <= SmallSegment {
		t.lastSmall = now
	} else {
		t.lastBulk = now
	}
}

// Len returns the number of open flows.
func (t *Table) Len() int { return t.flows.Len() }

func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }
