package engine

import (
	"github.com/nsgate/nsgate/internal/flow"
)

// Counters is everything the loop counts, and the limits in force: the
// API's get_stats reply and the exit line. The JSON names are the API's.
type Counters struct {
	Frames Stats `json:"frames"`
	TCP    struct {
		Open      int    `json:"open"`
		HalfOpen  int    `json:"half_open"`
		Opened    uint64 `json:"opened"`
		Forwarded uint64 `json:"forwarded"` // opened by a port forward's client
		Refused   uint64 `json:"refused"`   // the host refused the connect
		Reset     uint64 `json:"reset"`
		// LimitRefused were refused at the flow limit, HalfOpenReset reset
		// at the half-open limit to make room, Denied refused by the
		// egress policy.
		LimitRefused  uint64 `json:"limit_refused"`
		HalfOpenReset uint64 `json:"half_open_reset"`
		Denied        uint64 `json:"denied"`
		// Cookies counts SYNs answered with a SYN cookie at the half-open
		// limit, CookieFlows the connections their ACKs opened.
		Cookies     uint64 `json:"syn_cookies"`
		CookieFlows uint64 `json:"syn_cookie_connections"`
	} `json:"tcp"`
	UDP struct {
		Open         int    `json:"open"`
		Opened       uint64 `json:"opened"`
		Dropped      uint64 `json:"dropped"`     // host datagrams too big for the MTU, or past a forward's limit
		ICMPErrors   uint64 `json:"icmp_errors"` // passed to the namespace
		LimitRefused uint64 `json:"limit_refused"`
		Evicted      uint64 `json:"evicted"` // idle flows closed to make room
		Denied       uint64 `json:"denied"`
	} `json:"udp"`
	ICMP struct {
		Open         int    `json:"open"`
		Opened       uint64 `json:"opened"`
		LimitRefused uint64 `json:"limit_refused"`
		Denied       uint64 `json:"denied"`
	} `json:"icmp"`
	Limits struct {
		NoFile      int `json:"nofile"`
		Reserve     int `json:"reserve"`
		MaxFlows    int `json:"max_flows"`
		MaxHalfOpen int `json:"max_half_open"`
		MaxUDP      int `json:"max_udp_flows"`
		MaxICMP     int `json:"max_icmp_flows"`
		Flows       int `json:"flows"` // flows of all protocols now, against max_flows
	} `json:"limits"`
	Pcap *PcapCounters `json:"pcap,omitempty"` // nil without --pcap
}

// PcapCounters are --pcap's file: bytes written and frames not recorded.
type PcapCounters struct {
	Bytes   int64  `json:"bytes"`
	Dropped uint64 `json:"dropped"`
}

// Counters returns the counters. Call it on the loop (Do), or after Run.
func (e *Engine) Counters() Counters {
	var c Counters
	c.Frames = e.stats
	t := e.tcp
	c.TCP.Open, c.TCP.HalfOpen, c.TCP.Opened, c.TCP.Forwarded = t.Len(), t.HalfOpen(), t.Opened, t.Inbound
	c.TCP.Refused, c.TCP.Reset = t.Refused, t.Resets
	c.TCP.LimitRefused, c.TCP.HalfOpenReset, c.TCP.Denied = t.FlowLimit, t.HalfOpenResets, t.Denied
	c.TCP.Cookies, c.TCP.CookieFlows = t.Cookies, t.CookieFlows
	u := e.udp
	c.UDP.Open, c.UDP.Opened, c.UDP.Dropped, c.UDP.ICMPErrors = u.Len(), u.Opened, u.Dropped, u.ICMPErrors
	c.UDP.LimitRefused, c.UDP.Evicted, c.UDP.Denied = u.FlowLimit, u.Evicted, u.Denied
	p := e.pings
	c.ICMP.Open, c.ICMP.Opened, c.ICMP.LimitRefused, c.ICMP.Denied = p.Len(), p.Opened, p.FlowLimit, p.Denied
	l := e.cfg.Limits
	c.Limits.NoFile, c.Limits.Reserve, c.Limits.MaxFlows = l.NoFile, l.Reserve, l.Flows
	c.Limits.MaxHalfOpen, c.Limits.MaxUDP, c.Limits.MaxICMP = l.HalfOpen, l.UDP, l.Ping
	c.Limits.Flows = e.budget.Used()
	if w := e.cfg.Pcap; w != nil {
		c.Pcap = &PcapCounters{w.Size(), w.Dropped}
	}
	return c
}

// Flows returns the open flows of every protocol. Call it on the loop (Do).
func (e *Engine) Flows() []flow.Info {
	fl := e.tcp.AppendFlows(nil)
	fl = e.udp.AppendFlows(fl)
	return e.pings.AppendFlows(fl)
}

// Inspector is the engine's counters and flows for other goroutines (the
// API socket): each call runs on the loop.
type Inspector struct{ e *Engine }

// Inspector returns the thread-safe face of Counters and Flows.
func (e *Engine) Inspector() Inspector { return Inspector{e} }

// Stats returns Counters, taken on the loop.
func (i Inspector) Stats() (c Counters, err error) {
	if !i.e.Do(func() { c = i.e.Counters() }) {
		return c, ErrStopped
	}
	return c, nil
}

// Flows returns the open flows, taken on the loop.
func (i Inspector) Flows() (fl []flow.Info, err error) {
	if !i.e.Do(func() { fl = i.e.Flows() }) {
		return nil, ErrStopped
	}
	return fl, nil
}
