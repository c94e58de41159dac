// Package engine is nsgate's event loop. One goroutine owns the tap, the
// protocol state, every host socket and every timer; it waits in epoll_wait
// (polling briefly first during request/response traffic: DefaultBusyPoll)
// and dispatches each frame, parsed once, to the protocol that answers it.
// Nothing on the per-frame path allocates or locks. Control-plane
// goroutines (signals, the API socket, the DNS relay) reach the loop only
// through Stop, Do and the relay's answers, which wake it through one
// eventfd (wakeLoop).
package engine

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nsgate/nsgate/internal/arp"
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/dhcp"
	"github.com/nsgate/nsgate/internal/dhcp6"
	"github.com/nsgate/nsgate/internal/dns"
	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/fwd"
	"github.com/nsgate/nsgate/internal/icmp"
	"github.com/nsgate/nsgate/internal/kernel"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/ndp"
	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/pcap"
	"github.com/nsgate/nsgate/internal/policy"
	"github.com/nsgate/nsgate/internal/tapdev"
	"github.com/nsgate/nsgate/internal/tcp"
	"github.com/nsgate/nsgate/internal/udp"
	"golang.org/x/sys/unix"
)

// Tap is the frame device the engine serves: tapdev.Device, or a socketpair
// in tests. Buffers passed to Read and Write start with Headroom() bytes
// reserved for the device's own header.
type Tap interface {
	Fd() int
	Headroom() int
	Read(buf []byte) (int, error)
	// Write writes a frame; o says what the receiver's kernel is to do:
	// complete a partial checksum, segment a super-frame (see
	// tapdev.Device.Write).
	Write(buf []byte, o packet.Offload) error
}

// Queued is a Tap that queues what Write gives it (a VM's stream socket,
// vmsock.Port): the loop calls Flush after each round of events and watches
// for EPOLLOUT while Flush reports bytes still queued. Buffered reports
// frames already read from the descriptor, which epoll cannot see: the loop
// then polls without waiting.
type Queued interface {
	Flush() (pending bool, err error)
	Buffered() bool
}

// Framer is a Queued tap that frames can be built in (vmsock.Port):
// Reserve returns room for one frame, headroom included, at the queue's
// tail (nil if there is none), and Commit queues the n-byte frame built
// there, where Write would copy it. The translators build their frames
// there (protoEnv.Frame).
type Framer interface {
	Reserve() []byte
	Commit(n int, o packet.Offload) error
}

// Peer is a Tap whose other end comes and goes: a VM connecting to nsgate's
// socket. Fd is -1 while no peer is connected. When the peer leaves (a read
// fails), the loop resets every flow, calls Hangup, and waits for the next
// peer on ListenFd; with no listener (-1), or Config.OneOff, Run returns.
type Peer interface {
	ListenFd() int
	// Accept takes a waiting peer; unix.EAGAIN if none waits.
	Accept() error
	Hangup()
}

// Config is what the engine needs to know of the network.
type Config struct {
	Net config.Network
	// IPv6 serves Net6 too (-6): router advertisements, neighbour
	// discovery, and TCP and UDP over IPv6.
	IPv6       bool
	Net6       config.Network6
	MTU        int
	DisableDNS bool
	// NameServer, if valid (--dns), is the nameserver DHCP announces in
	// place of the DNS address.
	NameServer netip.Addr
	MAC        packet.MAC // nsgate's MAC on the tap
	// GuestMAC is the namespace's MAC on the tap, if known (the tap's own
	// address): forwarded connections need it before the namespace has
	// sent anything. The loop also learns it from the frames it reads.
	GuestMAC packet.MAC
	// DisableHostLoopback refuses connections to the gateway address
	// instead of mapping them to the host's 127.0.0.1.
	DisableHostLoopback bool
	// Limits are the flow limits (flow.Derive); zero: derived from
	// RLIMIT_NOFILE with no --max-flows.
	Limits flow.Limits
	// Policy is the egress policy (nil: allow all).
	Policy *policy.Policy
	// Pcap, if set, records every frame on the tap (--pcap).
	Pcap *pcap.Writer
	// Logf receives the few messages the loop prints (nil: none).
	Logf func(format string, args ...any)
	// Impair, if set, drops and reorders frames on the tap (tests only).
	Impair *Impairment
	// AllowHost, if set, approves each host address flows go to (tests in
	// the machine's own namespace: loopback only).
	AllowHost func(addr packet.Addr) bool
	// Outbound and Outbound6, if valid, are the source addresses of the
	// namespace's TCP connections and UDP flows (--outbound-addr,
	// --outbound-addr6).
	Outbound, Outbound6 netip.Addr
	// DNSServers are the host's nameservers (from /etc/resolv.conf) that
	// queries to the DNS address are relayed to. Empty: SERVFAIL at once.
	DNSServers []netip.Addr
	// Kernel is what kernel.Probe found at start.
	Kernel kernel.Features
	// OneOff makes Run return when a Peer tap's peer leaves, instead of
	// waiting for the next (--one-off).
	OneOff bool
	// BusyPoll is how long the loop polls for events before it sleeps,
	// while the TCP traffic is request/response (0: DefaultBusyPoll;
	// negative: never).
	BusyPoll time.Duration
	// Pasta, if set, is pasta's addressing and mappings (config.Pasta).
	Pasta *config.Pasta
}

// GatewayMAC derives nsgate's MAC from the gateway address the way libslirp
// does (52:55:IP), so that it is stable across restarts.
func GatewayMAC(gw netip.Addr) packet.MAC {
	a := gw.As4()
	return packet.MAC{0x52, 0x55, a[0], a[1], a[2], a[3]}
}

// Stats counts frames. Only the loop writes them; read them after Run,
// or on the loop (Do). The JSON names are get_stats's.
type Stats struct {
	RxFrames  uint64 `json:"in"`        // frames read from the tap
	TxFrames  uint64 `json:"out"`       // frames written to the tap
	Malformed uint64 `json:"malformed"` // frames that failed to decode
	// BadOffload counts frames dropped for their vnet header: a hostile
	// field (tapdev.VirtioNetHdr.Offload), or a GSO type that does not
	// match the packet, or a USO frame of too many segments.
	BadOffload uint64 `json:"bad_vnet_header"`
	Ignored    uint64 `json:"ignored"`  // well-formed frames no protocol answers (IPv6, others' MACs)
	TxErrors   uint64 `json:"tap_full"` // frames the tap refused (queue full)
}

// epoll tokens: what an event's descriptor is. The kind is in the top byte
// of the event's Pad field, a flow generation in the rest; Fd holds an index.
const (
	tokenTap = iota
	tokenWake
	tokenStop
	tokenTCP
	tokenUDP
	tokenPing
	tokenFwd
	tokenListen
)

func token(kind int, gen uint32) int32 { return int32(uint32(kind)<<24 | gen&0xffffff) }

// batch bounds the frames read per wake-up, so that one busy descriptor
// cannot starve the others.
const batch = 256

// Engine is the event loop.
type Engine struct {
	tap    Tap
	queued Queued // the tap, if it queues writes; else nil
	framer Framer // the tap, if frames are built in its queue; else nil
	// cur is the buffer protoEnv.Frame gave out last: out, or room the
	// framer reserved.
	cur    []byte
	peer   Peer // the tap, if its peer comes and goes; else nil
	tapOut bool // EPOLLOUT is watched on the tap: Flush left bytes queued
	// relistenAt, if not 0, is when the listening socket is watched again
	// (see acceptPause).
	relistenAt  time.Duration
	cfg         Config
	ep          int
	wake        int
	in          [][]byte // frame buffers for one batch of tap reads
	out         []byte
	parsed      packet.Parsed
	arp         *arp.Responder
	dhcp        *dhcp.Server
	tcp         *tcp.Table
	udp         *udp.Table
	pings       *icmp.Pings
	ndp         *ndp.Router // nil without IPv6
	dhcp6       *dhcp6.Server
	fwd         *fwd.Table
	guestMAC    packet.MAC
	ctl         chan func()   // work from control-plane goroutines (Do)
	exited      chan struct{} // closed when Run returns (or Close, if it never ran)
	exitOnce    sync.Once
	wakeMu      sync.RWMutex // Close against Do's write to wake
	closed      bool
	dns         *dns.Relay // nil with --disable-dns
	dnsAddr     packet.Addr
	dnsAddr6    packet.Addr // zero without IPv6 or with --disable-dns
	gateway     packet.Addr
	stops       []string // reason per stop descriptor, by index
	stopping    atomic.Pointer[string]
	stats       Stats
	budget      flow.Budget   // the flows of every table, against cfg.Limits.Flows
	spin        time.Duration // cfg.BusyPoll, or its default
	polling     bool          // the loop busy-polls (Interactive): readTap stops after a request
	request     bool          // the frame just handled was a small TCP segment
	pcapStopped bool          // --pcap's cap or an error stopped the recording: said once
}

// New creates the loop for tap.
func New(tap Tap, cfg Config) (*Engine, error) {
	if cfg.Limits.Flows == 0 {
		l, err := flow.Derive(flow.NoFile(), 0)
		if err != nil {
			return nil, err
		}
		cfg.Limits = l
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	gateway := packet.AddrFromNetip(cfg.Net.Gateway)
	owned := []packet.Addr{gateway}
	var dnsAddr packet.Addr
	dhcpDNS := cfg.Net.DNS
	// The relay serves the DNS address unless --dns names another
	// nameserver; pasta's --dns-forward is served whatever -D says.
	relay := !cfg.DisableDNS && (!cfg.NameServer.IsValid() || cfg.Pasta != nil)
	if cfg.NameServer.IsValid() {
		dhcpDNS = cfg.NameServer
	} else if cfg.DisableDNS {
		dhcpDNS = netip.Addr{}
	}
	if relay && cfg.Net.DNS.IsValid() {
		dnsAddr = packet.AddrFromNetip(cfg.Net.DNS)
		owned = append(owned, dnsAddr)
	}
	queued, _ := tap.(Queued)
	peer, _ := tap.(Peer)
	framer, _ := tap.(Framer)
	if cfg.Impair != nil {
		tap = newImpairedTap(tap, *cfg.Impair)
		framer = nil // every frame goes through the impairment's Write
	}
	h := tap.Headroom()
	e := &Engine{
		tap:     tap,
		queued:  queued,
		framer:  framer,
		peer:    peer,
		cfg:     cfg,
		ep:      ep,
		wake:    wake,
		dnsAddr: dnsAddr,
		gateway: gateway,
		in:      make([][]byte, readBuffers),
		out:     make([]byte, h+tapdev.MaxFrame),
		arp:     arp.NewResponder(cfg.MAC, owned...),
		dhcp: dhcp.NewServer(dhcp.Config{
			ServerMAC: cfg.MAC,
			ServerIP:  cfg.Net.Gateway,
			Mask:      cfg.Net.Mask,
			Broadcast: cfg.Net.Broadcast,
			DNS:       dhcpDNS,
			PoolStart: cfg.Net.DHCPStart,
			MTU:       cfg.MTU,
		}),
	}
	var dnsServers []packet.Addr
	if !cfg.DisableDNS {
		for _, a := range cfg.DNSServers {
			if a.Zone() != "" {
				continue // a link-local nameserver: UDP only (packet.Addr has no zone)
			}
			dnsServers = append(dnsServers, packet.AddrFromNetip(a))
		}
		e.dns = dns.NewRelay(cfg.DNSServers, e.wakeLoop)
	}
	lim := cfg.Limits
	e.budget = flow.Budget{Max: lim.Flows}
	e.spin = cfg.BusyPoll
	if e.spin == 0 {
		e.spin = DefaultBusyPoll
	}
	m := nat.Mapper{Gateway: gateway, Network: cfg.Net.Prefix,
		DisableHostLoopback: cfg.DisableHostLoopback, AllowHost: cfg.AllowHost, Policy: cfg.Policy}
	if cfg.IPv6 {
		m.Gateway6, m.Network6 = packet.AddrFromNetip(cfg.Net6.Gateway), cfg.Net6.Prefix
	}
	if p := cfg.Pasta; p != nil {
		// The host's network: only the namespace's own address is not
		// reached through nsgate.
		m.Network = netip.PrefixFrom(cfg.Net.Guest, 32)
		e.arp.AnswerAllBut(packet.AddrFromNetip(cfg.Net.Guest))
		if cfg.IPv6 {
			m.Network6 = netip.PrefixFrom(cfg.Net6.Guest, 128)
		}
		m.PlainGateway = p.PlainGateway
		if a := p.MapHostLoopback; a.IsValid() {
			// The host's loopback is this address; the gateway is the
			// router it is on the host, and answered for like any other.
			m.Gateway, m.PlainGateway = packet.AddrFromNetip(a), false
		}
		if a := p.MapHostLoopback6; a.IsValid() && cfg.IPv6 {
			m.Gateway6, m.PlainGateway = packet.AddrFromNetip(a), false
		}
		m.GuestMap, m.GuestTo = packet.AddrFromNetip(p.MapGuest), packet.AddrFromNetip(p.HostAddr)
		m.GuestMap6, m.GuestTo6 = packet.AddrFromNetip(p.MapGuest6), packet.AddrFromNetip(p.HostAddr6)
	}
	if cfg.IPv6 {
		if relay && cfg.Net6.DNS.IsValid() {
			e.dnsAddr6 = packet.AddrFromNetip(cfg.Net6.DNS)
		}
		e.ndp = ndp.New(ndp.Config{
			MAC:       cfg.MAC,
			Prefix:    packet.AddrFromNetip(cfg.Net6.Prefix.Addr()),
			Gateway:   m.Gateway6,
			LinkLocal: packet.AddrFromNetip(cfg.Net6.LinkLocal),
			DNS:       e.dnsAddr6,
			MTU:       cfg.MTU,
			// DHCPv6 leases addresses and answers Information-Requests.
			Managed: true,
			Other:   true,
			Proxy:   cfg.Pasta != nil,
			Guest:   packet.AddrFromNetip(cfg.Net6.Guest),
		})
		var dhcpDNS6 netip.Addr // none with --disable-dns
		if !e.dnsAddr6.IsZero() {
			dhcpDNS6 = cfg.Net6.DNS
		}
		e.dhcp6 = dhcp6.NewServer(dhcp6.Config{
			ServerMAC: cfg.MAC,
			LinkLocal: cfg.Net6.LinkLocal,
			Prefix:    cfg.Net6.Prefix,
			DNS:       dhcpDNS6,
		})
	}
	outbound := flow.Outbound{V4: packet.AddrFromNetip(cfg.Outbound), V6: packet.AddrFromNetip(cfg.Outbound6)}
	e.tcp = tcp.New(tcp.Config{
		GatewayMAC:  cfg.MAC,
		NAT:         m,
		MTU:         cfg.MTU,
		MaxFlows:    lim.Flows,
		MaxHalfOpen: lim.HalfOpen,
		Budget:      &e.budget,
		DNS:         dnsAddr,
		DNS6:        e.dnsAddr6,
		DNSServers:  dnsServers,
		Outbound:    outbound,
		NoPeekOff:   !cfg.Kernel.TCPPeekOff,
		// A vnet header can ask the namespace's kernel to segment.
		GSO: h == tapdev.VnetHdrLen,
		// A small segment's ACK waits for the answer only while the
		// loop polls for it.
		AckHold:    max(e.spin, 0),
		DelayedAck: tcp.DefaultDelayedAck,
	}, &protoEnv{e, tokenTCP})
	e.udp = udp.New(udp.Config{
		GatewayMAC: cfg.MAC,
		NAT:        m,
		Broadcast:  packet.AddrFromNetip(cfg.Net.Broadcast),
		MTU:        cfg.MTU,
		Outbound:   outbound,
		MaxFlows:   lim.UDP,
		Budget:     &e.budget,
	}, &protoEnv{e, tokenUDP})
	e.pings = icmp.NewPings(icmp.PingConfig{GatewayMAC: cfg.MAC, NAT: m, MaxFlows: lim.Ping, Budget: &e.budget}, &protoEnv{e, tokenPing})
	e.fwd = fwd.New(&protoEnv{e, tokenFwd}, (*fwdSink)(e))
	e.guestMAC = cfg.GuestMAC
	e.cur = e.out
	e.ctl = make(chan func(), 16)
	e.exited = make(chan struct{})
	for i := range e.in {
		// Touched only as far as frames reach: large MTUs cost memory only
		// when they are used.
		e.in[i] = make([]byte, h+tapdev.MaxFrame)
	}
	if fd := tap.Fd(); fd >= 0 { // a Peer may have none yet
		if err := e.add(fd, tokenTap, 0); err != nil {
			e.Close()
			return nil, fmt.Errorf("watch tap fd %d: %w", fd, err)
		}
	}
	if peer != nil && peer.ListenFd() >= 0 {
		if err := e.add(peer.ListenFd(), tokenListen, 0); err != nil {
			e.Close()
			return nil, fmt.Errorf("watch listening socket fd %d: %w", peer.ListenFd(), err)
		}
	}
	if err := e.add(wake, tokenWake, 0); err != nil {
		e.Close()
		return nil, fmt.Errorf("watch eventfd: %w", err)
	}
	return e, nil
}

func (e *Engine) add(fd int, kind, index int32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: index, Pad: token(int(kind), 0)}
	return unix.EpollCtl(e.ep, unix.EPOLL_CTL_ADD, fd, &ev)
}

// AddStopFD makes Run return reason as soon as fd is readable or hung up:
// the exit fd's writer closing, a pidfd whose process exited. It fails for a
// descriptor epoll cannot watch (closed, or a regular file).
func (e *Engine) AddStopFD(fd int, reason string) error {
	if err := e.add(fd, tokenStop, int32(len(e.stops))); err != nil {
		return err
	}
	e.stops = append(e.stops, reason)
	return nil
}

// Stop makes Run return reason. Any goroutine may call it.
func (e *Engine) Stop(reason string) {
	if e.stopping.CompareAndSwap(nil, &reason) {
		e.wakeLoop()
	}
}

// wakeLoop makes epoll_wait return: the one writer of the eventfd (Stop,
// Do, the DNS relay's answers). The write is made under wakeMu and only
// while the engine is open, so that none can reach a descriptor Close has
// closed, or one reused since.
func (e *Engine) wakeLoop() {
	e.wakeMu.RLock()
	defer e.wakeMu.RUnlock()
	if !e.closed {
		var one = [8]byte{1}
		_, _ = unix.Write(e.wake, one[:])
	}
}

// Stats returns the frame counters.
func (e *Engine) Stats() Stats { return e.stats }

// Close releases the loop's descriptors (not the tap's), the forwards'
// listeners and the spare TCP sockets among them, and waits for the DNS
// relay's goroutines. Call it after Run has returned.
func (e *Engine) Close() {
	e.exitOnce.Do(func() { close(e.exited) })
	if e.dns != nil {
		e.dns.Close()
	}
	e.fwd.Close()
	e.tcp.Close()
	e.wakeMu.Lock()
	e.closed = true
	unix.Close(e.ep)
	unix.Close(e.wake)
	e.wakeMu.Unlock()
}

// ErrTapGone is returned by Run when the tap stops working, typically because
// its namespace was destroyed.
var ErrTapGone = errors.New("tap device gone")

// Run serves until a stop descriptor fires, Stop is called, or the tap fails.
// It returns the reason for stopping.
func (e *Engine) Run() (string, error) {
	defer e.exitOnce.Do(func() { close(e.exited) })
	events := make([]unix.EpollEvent, 128)
	for {
		if r := e.stopping.Load(); r != nil {
			return *r, nil
		}
		timeout := -1
		if next := e.nextTimer(); next != 0 {
			timeout = max(int((next-monotime()+time.Millisecond-1)/time.Millisecond), 0)
		}
		if e.queued != nil && e.queued.Buffered() {
			timeout = 0 // frames read already, left by readTap's batch limit
		}
		e.tcp.Idle()
		n, err := 0, error(nil)
		now := monotime()
		e.polling = timeout != 0 && e.spin > 0 && e.tcp.Interactive(now)
		if e.polling {
			n, err = e.busyPoll(events, now+e.spin)
		}
		if n == 0 && err == nil {
			if e.tcp.Held() {
				// No answer came to carry them: the ACKs go now, before
				// the loop sleeps.
				e.tcp.Flush(false)
				e.flushTap()
				e.flushPcap()
			}
			n, err = unix.EpollWait(e.ep, events, timeout)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			kind := uint32(ev.Pad) >> 24
			switch kind {
			case tokenTap:
				if e.peer != nil && e.tap.Fd() < 0 {
					break // the peer left earlier in this batch of events
				}
				if ev.Events&unix.EPOLLOUT != 0 {
					e.flushTap()
				}
				if ev.Events&^unix.EPOLLOUT == 0 {
					break
				}
				if reason, err := e.serveTap(); reason != "" || err != nil {
					return reason, err
				}
			case tokenListen:
				if e.tap.Fd() >= 0 {
					// First what the current peer sent: if it has left (a
					// probe, a VM that powered off), the newcomer takes its
					// place rather than being turned away.
					if reason, err := e.serveTap(); reason != "" || err != nil {
						return reason, err
					}
				}
				e.accept()
			case tokenTCP:
				e.tcp.HandleEvent(ev.Fd, uint32(ev.Pad)&0xffffff, ev.Events)
			case tokenUDP:
				e.udp.HandleEvent(ev.Fd, uint32(ev.Pad)&0xffffff, ev.Events)
			case tokenPing:
				e.pings.HandleEvent(ev.Fd, uint32(ev.Pad)&0xffffff, ev.Events)
			case tokenFwd:
				e.fwd.HandleEvent(ev.Fd, uint32(ev.Pad)&0xffffff, ev.Events)
			case tokenWake:
				var b [8]byte
				_, _ = unix.Read(e.wake, b[:])
				e.dnsAnswers()
				e.runCtl()
			case tokenStop:
				return e.stops[ev.Fd], nil
			}
		}
		if e.queued != nil && e.queued.Buffered() {
			if reason, err := e.serveTap(); reason != "" || err != nil {
				return reason, err
			}
		}
		e.tcp.Flush(true)
		if e.relistenAt != 0 && monotime() >= e.relistenAt {
			e.relistenAt = 0
			if err := e.add(e.peer.ListenFd(), tokenListen, 0); err != nil {
				return "", fmt.Errorf("watch listening socket fd %d again: %w", e.peer.ListenFd(), err)
			}
		}
		if next := e.nextTimer(); next != 0 && monotime() >= next {
			e.tcp.Tick()
			e.tcp.Flush(true)
			e.udp.Tick()
			e.pings.Tick()
			if e.ndp != nil && e.tap.Fd() >= 0 {
				if n := e.ndp.Tick(monotime(), e.out[e.tap.Headroom():]); n > 0 {
					e.send(n)
				}
			}
		}
		e.flushTap()
		e.flushPcap()
	}
}

// DefaultBusyPoll is how long the loop polls for events before it sleeps
// (Config.BusyPoll), while its TCP traffic is request/response
// (tcp.Table.Interactive). The answer to a request comes within tens of
// microseconds; a loop asleep in epoll_wait must be woken for it, and on a
// virtual machine waking an idle vCPU costs more than the answer took
// (1-byte round trips: 115 µs p50 asleep, 79 µs polling, median of 9 runs
// on a 2-vCPU VM). It is bounded three ways: the poll lasts at most this
// long per wait; an idle loop, or one whose last small exchange is a
// millisecond old, sleeps at once; and bulk traffic, which finds events
// waiting anyway, turns it off, so that the CPU it would burn goes to the
// applications at both ends.
const DefaultBusyPoll = 100 * time.Microsecond

// busyPoll polls epoll without waiting until events come or until the
// monotonic time until. The calls are raw: a poll that cannot block need
// not tell Go's scheduler, which would otherwise hand the thread's P to
// another thread when the loop has polled long enough.
func (e *Engine) busyPoll(events []unix.EpollEvent, until time.Duration) (int, error) {
	for monotime() < until {
		// epoll_pwait with no signal mask: every architecture has it.
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(e.ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if errno != 0 {
			return 0, errno
		}
		if r > 0 {
			return int(r), nil
		}
	}
	return 0, nil
}

// serveTap reads the tap. For a Peer tap, a failed read is the peer
// leaving: serveTap then returns the reason to stop, or "" to wait for the
// next peer.
func (e *Engine) serveTap() (string, error) {
	err := e.readTap()
	if err == nil {
		return "", nil
	}
	if e.peer == nil {
		return "", err
	}
	return e.hangup(err), nil
}

// hangup ends the peer's connection after the read error err. Every flow
// is reset, the host's ends with a RST: a VM that reconnects has rebooted,
// or is another, and holds none of them. It returns the reason Run stops
// for, or "" when the loop waits for the next peer.
func (e *Engine) hangup(err error) string {
	why := "VM disconnected"
	if !errors.Is(err, io.EOF) {
		why = fmt.Sprintf("VM connection dropped: %v", err)
	}
	e.flush()
	e.tcp.Reset()
	e.udp.Reset()
	e.pings.Reset()
	e.peer.Hangup() // closing the descriptor takes it out of epoll
	e.tapOut = false
	var probe interface{ Silent() bool }
	if errors.As(err, &probe) && probe.Silent() && e.peer.ListenFd() >= 0 {
		e.logf("%v", err) // not a VM: --one-off waits on
		return ""
	}
	if e.peer.ListenFd() < 0 || e.cfg.OneOff {
		return why
	}
	e.logf("%s; waiting for the next connection", why)
	return ""
}

// acceptPause is how long the listening socket is left alone after accept
// failed for want of a resource (EMFILE, ENOBUFS): the connection stays
// queued, and a level-triggered descriptor would otherwise spin the loop.
const acceptPause = time.Second

// accept takes a peer waiting on the listening socket.
func (e *Engine) accept() {
	switch err := e.peer.Accept(); {
	case err == unix.EAGAIN:
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM):
		e.logf("VM socket: accept: %v (trying again in %v)", err, acceptPause)
		_ = unix.EpollCtl(e.ep, unix.EPOLL_CTL_DEL, e.peer.ListenFd(), nil)
		e.relistenAt = monotime() + acceptPause
	case err != nil:
		e.logf("VM socket: accept: %v", err)
	default:
		if err := e.add(e.tap.Fd(), tokenTap, 0); err != nil {
			e.logf("VM socket: watch connection fd %d: %v", e.tap.Fd(), err)
			e.peer.Hangup()
			return
		}
		e.logf("VM connected")
	}
}

// flushTap sends what a Queued tap holds, and watches for EPOLLOUT while
// some stays queued.
func (e *Engine) flushTap() {
	if e.queued == nil || e.tap.Fd() < 0 {
		return
	}
	pending, err := e.queued.Flush()
	if err != nil {
		e.stats.TxErrors++ // the connection broke: the next read says so
	}
	if pending == e.tapOut {
		return
	}
	events := uint32(unix.EPOLLIN)
	if pending {
		events |= unix.EPOLLOUT
	}
	ev := unix.EpollEvent{Events: events, Pad: token(tokenTap, 0)}
	if err := unix.EpollCtl(e.ep, unix.EPOLL_CTL_MOD, e.tap.Fd(), &ev); err == nil {
		e.tapOut = pending
	}
}

func (e *Engine) logf(format string, args ...any) {
	if e.cfg.Logf != nil {
		e.cfg.Logf(format, args...)
	}
}

// readBuffers is how many frames are read before the UDP datagrams among
// them are sent (one sendmmsg a flow): each frame keeps its buffer until then.
const readBuffers = 32

// readTap handles up to batch queued frames; while the loop busy-polls,
// it stops after a request.
func (e *Engine) readTap() error {
	defer e.flush()
	for i := 0; i < batch; i++ {
		if i%readBuffers == 0 && i > 0 {
			e.udp.Flush() // the buffers are about to be reused
		}
		buf := e.in[i%readBuffers]
		n, err := e.tap.Read(buf)
		if err == unix.EAGAIN {
			return nil
		}
		if err != nil {
			if e.peer != nil {
				return err // the peer left, or broke the framing: see hangup
			}
			return fmt.Errorf("%w: read: %v", ErrTapGone, err)
		}
		e.stats.RxFrames++
		e.request = false
		e.tapFrame(buf, n)
		if e.polling && e.request && e.queued == nil {
			// Request/response, and this frame was a request: the read
			// that would find the tap empty is a system call on its
			// path. The tap is level-triggered: the poll reports the next
			// frame. Other frames (handshakes, a flood of SYNs) are read
			// in batches.
			return nil
		}
	}
	return nil
}

// tapFrame handles a frame of n bytes read into buf after the headroom,
// checking the vnet header there first, if the tap has one.
func (e *Engine) tapFrame(buf []byte, n int) {
	h := e.tap.Headroom()
	if e.cfg.Pcap != nil {
		e.cfg.Pcap.Frame(buf[h : h+n])
	}
	var rx packet.Offload
	if h == tapdev.VnetHdrLen {
		var vh tapdev.VirtioNetHdr
		_ = vh.Decode(buf[:h]) // h bytes are there
		var err error
		if rx, err = vh.Offload(n); err != nil {
			e.stats.BadOffload++
			return
		}
	}
	e.handle(buf[h:h+n], rx)
}

// maxUSOSegments is the most datagrams one USO frame may carry: the
// kernel's UDP_MAX_SEGMENTS, which a UDP_SEGMENT send also keeps to.
const maxUSOSegments = 128

// flush sends what the translators queued during a batch.
func (e *Engine) flush() {
	e.udp.Flush()
	e.tcp.Flush(true)
}

// HandleFrame dispatches one frame from the namespace and writes the answer,
// if any, to the tap. It is exported for tests and benchmarks.
func (e *Engine) HandleFrame(frame []byte) { e.handle(frame, packet.Offload{}) }

// handle dispatches a frame that came with rx, its vnet header's checked
// word: a super-frame's GSO type must be the packet's own.
func (e *Engine) handle(frame []byte, rx packet.Offload) {
	p := &e.parsed
	if err := p.DecodeTrusted(frame); err != nil {
		if err == packet.ErrEtherType {
			e.stats.Ignored++ // EtherTypes nsgate does not serve
		} else {
			e.stats.Malformed++
		}
		return
	}
	switch rx.GSO {
	case packet.GSONone:
	case packet.GSOTCPv4, packet.GSOTCPv6:
		// The GSO type must be the packet's own family's.
		if p.TCP == nil || (rx.GSO == packet.GSOTCPv4) != (p.IP != nil) {
			e.stats.BadOffload++
			return
		}
	case packet.GSOUDPL4:
		if p.UDP == nil || len(p.Payload) > maxUSOSegments*int(rx.GSOSize) {
			e.stats.BadOffload++
			return
		}
	default:
		e.stats.BadOffload++
		return
	}
	p.Offload = rx
	if p.DstMAC != e.cfg.MAC && !p.DstMAC.IsMulticast() {
		e.stats.Ignored++
		return
	}
	if !p.SrcMAC.IsMulticast() {
		e.guestMAC = p.SrcMAC // the namespace's MAC, for forwarded connections
	}
	out := e.out[e.tap.Headroom():]
	n := 0
	switch {
	case p.Type == packet.EtherTypeIPv6:
		if !e.handle6(p, out) {
			e.stats.Ignored++
		}
		return
	case p.Type == packet.EtherTypeARP:
		n = e.arp.Handle(p, out)
	case p.Proto == packet.ProtoUDP && p.UDP.DstPort() == dhcp.ServerPort && p.UDP.SrcPort() == dhcp.ClientPort:
		n = e.dhcp.Handle(p, out)
	case p.Proto == packet.ProtoICMP && e.ownsIP(p.Dst) && p.DstMAC == e.cfg.MAC:
		n = icmp.EchoReply(p, e.cfg.MAC, out)
	case p.Proto == packet.ProtoICMP && p.DstMAC == e.cfg.MAC:
		e.pings.HandleFrame(p)
		return
	case p.Proto == packet.ProtoTCP && p.DstMAC == e.cfg.MAC:
		e.tcp.HandleFrame(p)
		e.request = len(p.Payload) > 0 && len(p.Payload) <= tcp.SmallSegment
		return
	case p.Proto == packet.ProtoUDP && e.dns != nil && !e.dnsAddr.IsZero() && p.Dst == e.dnsAddr && p.UDP.DstPort() == 53 && p.DstMAC == e.cfg.MAC:
		e.dns.Query(dns.Client{IP: p.Src, Port: p.UDP.SrcPort(), MAC: p.SrcMAC}, p.Payload)
		return
	case p.Proto == packet.ProtoUDP:
		e.udp.HandleFrame(p) // drops broadcast and multicast itself
		return
	}
	if n == 0 {
		e.stats.Ignored++
		return
	}
	e.send(n)
}

// handle6 dispatches an IPv6 frame and reports whether anything took it.
func (e *Engine) handle6(p *packet.Parsed, out []byte) bool {
	if e.ndp == nil {
		return false // no -6
	}
	switch p.Proto {
	case packet.ProtoICMPv6:
		if n := e.ndp.Handle(p, out); n > 0 {
			e.send(n)
			return true
		}
		if p.ICMP.Type() == packet.ICMPv6EchoRequest && p.DstMAC == e.cfg.MAC && !e.ndp.Owns(p.Dst) {
			e.pings.HandleFrame(p)
			return true
		}
	case packet.ProtoTCP:
		if p.DstMAC == e.cfg.MAC {
			e.tcp.HandleFrame(p)
			e.request = len(p.Payload) > 0 && len(p.Payload) <= tcp.SmallSegment
			return true
		}
	case packet.ProtoUDP:
		if p.UDP.DstPort() == dhcp6.ServerPort && p.UDP.SrcPort() == dhcp6.ClientPort {
			if n := e.dhcp6.Handle(p, out); n > 0 {
				e.send(n)
			}
			return true
		}
		if e.dns != nil && !e.dnsAddr6.IsZero() && p.Dst == e.dnsAddr6 && p.UDP.DstPort() == 53 && p.DstMAC == e.cfg.MAC {
			e.dns.Query(dns.Client{IP: p.Src, Port: p.UDP.SrcPort(), MAC: p.SrcMAC}, p.Payload)
			return true
		}
		e.udp.HandleFrame(p) // drops multicast itself
		return true
	}
	return false
}

func (e *Engine) ownsIP(ip packet.Addr) bool {
	return ip == e.gateway || (!e.dnsAddr.IsZero() && ip == e.dnsAddr)
}

// send writes the n-byte frame built in e.out after the headroom. A full tap
// queue drops the frame, as a NIC would; the namespace's kernel retransmits.
func (e *Engine) send(n int) { e.sendFrame(n, packet.Offload{}) }

func (e *Engine) sendFrame(n int, o packet.Offload) { e.sendFrom(e.out, n, o) }

// sendFrom sends the n-byte frame built in buf after the headroom: buf is
// e.out, or room the framer reserved, which Commit queues in place.
func (e *Engine) sendFrom(buf []byte, n int, o packet.Offload) {
	h := e.tap.Headroom()
	var err error
	if &buf[0] != &e.out[0] {
		err = e.framer.Commit(n, o)
	} else {
		err = e.tap.Write(buf[:h+n], o)
	}
	if err != nil {
		e.stats.TxErrors++
		return
	}
	e.stats.TxFrames++
	if e.cfg.Pcap != nil {
		e.cfg.Pcap.Frame(buf[h : h+n])
	}
}

// flushPcap writes the frames --pcap recorded this round, and says once
// when recording stopped.
func (e *Engine) flushPcap() {
	w := e.cfg.Pcap
	if w == nil {
		return
	}
	w.Flush()
	if w.Dropped > 0 && !e.pcapStopped {
		e.pcapStopped = true
		if err := w.Err(); err != nil {
			e.logf("--pcap: %v: frames are no longer recorded", err)
		} else {
			e.logf("--pcap: the file reached its cap of %d bytes (--pcap-max): frames are no longer recorded", w.Max())
		}
	}
}

// nextTimer returns the earliest timer of the translators (and of the
// paused listening socket), or 0.
func (e *Engine) nextTimer() time.Duration {
	next := e.tcp.NextTimer()
	var ra time.Duration
	if e.ndp != nil && e.tap.Fd() >= 0 {
		ra = e.ndp.NextTimer()
	}
	for _, t := range [4]time.Duration{e.udp.NextTimer(), e.pings.NextTimer(), e.relistenAt, ra} {
		if t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	return next
}

// dnsAnswers sends the relay's answers that have arrived: datagrams from
// the DNS address's port 53 to the clients that asked.
func (e *Engine) dnsAnswers() {
	if e.dns == nil {
		return
	}
	for {
		select {
		case a := <-e.dns.Answers():
			out := e.out[e.tap.Headroom():]
			src, dst := e.dnsAddr, a.Client.IP
			if !dst.Is4() {
				src = e.dnsAddr6
			}
			ipLen := packet.IPHeaderLen(dst)
			hdr := packet.EtherLen + ipLen + packet.UDPLen
			n := hdr + len(a.Msg)
			if n > packet.EtherLen+e.cfg.MTU {
				// Too big for the namespace's MTU: send the header with TC
				// set, so the client retries over TCP (RFC 1035 4.2.1).
				n = hdr + dns.HeaderLen
				a.Msg = a.Msg[:dns.HeaderLen]
				a.Msg[2] |= 0x02
			}
			copy(out[hdr:], a.Msg)
			l4 := n - packet.EtherLen - ipLen
			packet.Ether(out).SetHeader(a.Client.MAC, e.cfg.MAC, packet.EtherTypeOf(dst))
			packet.EncodeIP(out[packet.EtherLen:], &packet.IPFields{Protocol: packet.ProtoUDP, Src: src, Dst: dst, L4Len: l4})
			u := packet.UDP(out[packet.EtherLen+ipLen:])
			u.Encode(&packet.UDPFields{SrcPort: 53, DstPort: a.Client.Port, Length: l4})
			u.SetChecksum(src, dst)
			e.send(n)
		default:
			return
		}
	}
}

// protoEnv is the engine as one protocol translator sees it (flow.Env): its
// descriptors are reported with the protocol's token.
type protoEnv struct {
	e    *Engine
	kind int
}

// Frame returns the buffer to build the next frame in: room in a Framer
// tap's queue if it has some, else the engine's own.
func (v *protoEnv) Frame() []byte {
	e := v.e
	e.cur = e.out
	if e.framer != nil {
		if b := e.framer.Reserve(); b != nil {
			e.cur = b
		}
	}
	return e.cur[e.tap.Headroom():]
}

func (v *protoEnv) Send(n int, o packet.Offload) { v.e.sendFrom(v.e.cur, n, o) }

func (v *protoEnv) Watch(fd int, events uint32, idx int32, gen uint32, add bool) error {
	op := unix.EPOLL_CTL_MOD
	if add {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: events, Fd: idx, Pad: token(v.kind, gen)}
	return unix.EpollCtl(v.e.ep, op, fd, &ev)
}

func (v *protoEnv) Unwatch(fd int) { _ = unix.EpollCtl(v.e.ep, unix.EPOLL_CTL_DEL, fd, nil) }

func (v *protoEnv) Now() time.Duration { return monotime() }

func (v *protoEnv) Logf(format string, args ...any) { v.e.logf(format, args...) }

// clockBase anchors monotime: time.Since reads the monotonic clock through
// the vDSO, where unix.ClockGettime would be a system call per frame.
var clockBase = time.Now()

// monotime returns the time since clockBase, without allocation. It is
// never 0, which the timers read as "not armed".
func monotime() time.Duration { return time.Since(clockBase) + 1 }
