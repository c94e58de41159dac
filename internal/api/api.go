// Package api serves slirp4netns's JSON API socket (-a/--api-socket), with
// which podman and rootlesskit add and remove port forwards at run time.
//
// The protocol is slirp4netns's, byte for byte: a client connects, sends one
// JSON request and (usually) shuts down its writing side; nsgate answers
// with one JSON object in a single write and closes. podman reads the reply
// with one 2048-byte read, rootlesskit decodes it to EOF.
//
//	{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}
//	→ {"return":{"id":1}}
//	{"execute":"list_hostfwd"}
//	→ {"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}
//	{"execute":"remove_hostfwd","arguments":{"id":1}}
//	→ {"return":{}}
//
// Errors are {"error":{"desc":"bad request: ..."}} with slirp4netns's texts.
// Requests are handled on goroutines of their own, a bounded number at a
// time with a deadline each, so that no client can block the data path or
// starve other clients for long.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/nsgate/nsgate/internal/publish"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/fwd"
)

// MaxRequest is slirp4netns's request buffer: a request this long or longer
// is refused.
const MaxRequest = 4096

// Forwarder is what the API manages: the engine's forward table.
type Forwarder interface {
	Add(r publish.Rule) (int, error)
	Remove(id int) error
	List() ([]publish.Rule, error)
}

// Network is what the API needs to know of the virtual network: the
// address forwards go to by default, and the range guest addresses must
// fall in.
type Network struct {
	Guest   netip.Addr
	Prefix  netip.Prefix
	Gateway netip.Addr
	DNS     netip.Addr
	// IPv6 allows IPv6 forwards (-6): guest addresses in Prefix6, other
	// than Gateway6 and DNS6.
	IPv6           bool
	Prefix6        netip.Prefix
	Gateway6, DNS6 netip.Addr
}

// Replies, as slirp4netns writes them.
const (
	errParse        = `{"error":{"desc":"bad request: cannot parse JSON"}}`
	errNotObject    = `{"error":{"desc":"bad request: json_object() failed"}}`
	errNoExecute    = `{"error":{"desc":"bad request: no execute found"}}`
	errUnknown      = `{"error":{"desc":"bad request: unknown execute"}}`
	errTooLarge     = `{"error":{"desc":"bad request: too large message"}}`
	errProto        = `{"error":{"desc":"bad request: add_hostfwd: bad arguments.proto"}}`
	errHostAddr     = `{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_addr"}}`
	errHostPort     = `{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_port"}}`
	errGuestAddr    = `{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_addr"}}`
	errGuestPort    = `{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_port"}}`
	errAddFailed    = `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}`
	errRemoveID     = `{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}`
	errRemoveFailed = `{"error":{"desc":"bad request: remove_hostfwd: slirp_remove_hostfwd failed"}}`
	okRemoved       = `{"return":{}}`
)

// Handler answers requests.
type Handler struct {
	Fwd Forwarder
	Net Network
	// Stats returns get_stats's counters (any value that marshals to a
	// JSON object); Flows the open flows for list_flows. nil: the request
	// is unknown, as to slirp4netns.
	Stats func() (any, error)
	Flows func() ([]flow.Info, error)
	Logf  func(format string, args ...any) // details slirp4netns's texts leave out; nil: none
}

func (h *Handler) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

// object is a JSON object with its members left undecoded.
type object map[string]json.RawMessage

// str returns member k if it is a string.
func (o object) str(k string) (string, bool) {
	var s string
	raw, ok := o[k]
	if !ok || len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false // absent, or not a string (null decodes without error)
	}
	return s, true
}

// num returns member k if it is an integer; anything not a number reads
// as 0, as slirp4netns reads it. ok is false for a number that is not
// written as an integer (8089.5, 8e3: slirp4netns would truncate them
// to another port) or out of int32 range.
func (o object) num(k string) (n int, ok bool) {
	raw, present := o[k]
	if !present || len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, true
	}
	v, err := strconv.ParseInt(string(raw), 10, 32)
	if err != nil {
		return 0, false
	}
	return int(v), true
}

// Handle answers one request.
func (h *Handler) Handle(req []byte) []byte {
	if len(req) >= MaxRequest {
		return []byte(errTooLarge)
	}
	trimmed := bytes.TrimSpace(req)
	if !json.Valid(trimmed) {
		return []byte(errParse)
	}
	var top object
	if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &top) != nil {
		return []byte(errNotObject)
	}
	execute, ok := top.str("execute")
	if !ok {
		return []byte(errNoExecute)
	}
	var args object
	if raw, ok := top["arguments"]; ok {
		_ = json.Unmarshal(raw, &args) // not an object: no arguments, as slirp4netns reads it
	}
	switch execute {
	case "add_hostfwd":
		return h.add(args)
	case "list_hostfwd":
		return h.list()
	case "remove_hostfwd":
		return h.remove(args)
	case "get_stats":
		return h.stats()
	case "list_flows":
		return h.flows()
	}
	return []byte(errUnknown)
}

func port(n int, ok bool) (uint16, bool) {
	if !ok || n < 1 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

func (h *Handler) add(args object) []byte {
	r := publish.Rule{}
	var ok bool
	// slirp4netns 1.2 takes tcp and udp; 1.3 also tcp4/udp4 and
	// tcp6/udp6, which fix the family. Lists say tcp or udp, as
	// slirp4netns's do.
	family := byte(0)
	if r.Proto, ok = args.str("proto"); ok && len(r.Proto) == 4 && (r.Proto[3] == '4' || r.Proto[3] == '6') {
		r.Proto, family = r.Proto[:3], r.Proto[3]
	}
	if !ok || r.Proto != "tcp" && r.Proto != "udp" {
		return []byte(errProto)
	}
	hostAddr, _ := args.str("host_addr")
	if hostAddr == "" {
		hostAddr = "0.0.0.0"
		if family == '6' {
			hostAddr = "::"
		}
	}
	a, err := netip.ParseAddr(hostAddr)
	six := err == nil && a.Is6() && !a.Is4In6()
	if err != nil || a.Zone() != "" || a.Is4In6() || six && !h.Net.IPv6 || family == '4' && six || family == '6' && !six {
		return []byte(errHostAddr)
	}
	r.HostAddr = a
	if r.HostPort, ok = port(args.num("host_port")); !ok {
		return []byte(errHostPort)
	}
	if !six {
		r.GuestAddr = h.Net.Guest
	} // else the engine finds the namespace's IPv6 address
	if g, _ := args.str("guest_addr"); g != "" {
		a, err := netip.ParseAddr(g)
		if err != nil || a.Is6() != six || !six && !h.validGuest(a) || six && !h.validGuest6(a) {
			return []byte(errGuestAddr)
		}
		r.GuestAddr = a
	}
	if r.GuestPort, ok = port(args.num("guest_port")); !ok {
		return []byte(errGuestPort)
	}
	id, err := h.Fwd.Add(r)
	if err != nil {
		h.logf("api: add_hostfwd: %v", err)
		return []byte(errAddFailed)
	}
	return fmt.Appendf(nil, `{"return":{"id":%d}}`, id)
}

// validGuest reports whether a can be a host of the virtual network: inside
// it, and none of nsgate's own addresses or the network and broadcast
// addresses.
func (h *Handler) validGuest(a netip.Addr) bool {
	p := h.Net.Prefix
	if !p.Contains(a) || a == h.Net.Gateway || a == h.Net.DNS || a == p.Masked().Addr() {
		return false
	}
	b := a.As4()
	host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	mask := uint32(1)<<(32-p.Bits()) - 1
	return host&mask != mask
}

// validGuest6 reports whether a can be a host of the virtual IPv6 network:
// inside its prefix, and none of nsgate's own addresses.
func (h *Handler) validGuest6(a netip.Addr) bool {
	return h.Net.Prefix6.Contains(a) && a != h.Net.Gateway6 && a != h.Net.DNS6 && a != h.Net.Prefix6.Masked().Addr()
}

// entry is one line of list_hostfwd, in slirp4netns's member order.
type entry struct {
	ID        int    `json:"id"`
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  uint16 `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort uint16 `json:"guest_port"`
}

func (h *Handler) list() []byte {
	rules, err := h.Fwd.List()
	if err != nil {
		h.logf("api: list_hostfwd: %v", err)
	}
	entries := make([]entry, 0, len(rules))
	for _, r := range rules {
		guest := "" // an IPv6 forward's, before the namespace's MAC is known
		if r.GuestAddr.IsValid() {
			guest = r.GuestAddr.String()
		}
		entries = append(entries, entry{r.ID, r.Proto, r.HostAddr.String(), r.HostPort, guest, r.GuestPort})
	}
	out, err := json.Marshal(struct {
		Entries []entry `json:"entries"`
	}{entries})
	if err != nil {
		panic(err) // plain strings and numbers always marshal
	}
	return out
}

func (h *Handler) remove(args object) []byte {
	id, ok := args.num("id")
	if !ok || id < 1 {
		return []byte(errRemoveID)
	}
	if err := h.Fwd.Remove(id); err != nil {
		if errors.Is(err, fwd.ErrNoRule) {
			return []byte(errRemoveID)
		}
		h.logf("api: remove_hostfwd %s: %v", strconv.Itoa(id), err)
		return []byte(errRemoveFailed)
	}
	return []byte(okRemoved)
}

// stats answers get_stats: {"return":{...}} with the counters.
func (h *Handler) stats() []byte {
	if h.Stats == nil {
		return []byte(errUnknown)
	}
	c, err := h.Stats()
	if err != nil {
		return errorReply("get_stats", err)
	}
	out, err := json.Marshal(struct {
		Return any `json:"return"`
	}{c})
	if err != nil {
		return errorReply("get_stats", err)
	}
	return out
}

// flowEntry is one line of list_flows, the namespace's side first, in
// list_hostfwd's naming.
type flowEntry struct {
	Proto     string `json:"proto"`
	GuestAddr string `json:"guest_addr"`
	GuestPort uint16 `json:"guest_port"` // ICMP: the echo identifier
	DestAddr  string `json:"dest_addr"`  // as the namespace addressed it
	DestPort  uint16 `json:"dest_port"`
	State     string `json:"state,omitempty"` // TCP's
	Inbound   bool   `json:"inbound"`         // opened by a port forward's client
	AgeMS     int64  `json:"age_ms"`
	FromGuest uint64 `json:"bytes_from_guest"`
	ToGuest   uint64 `json:"bytes_to_guest"`
}

// flows answers list_flows: {"entries":[...]}.
func (h *Handler) flows() []byte {
	if h.Flows == nil {
		return []byte(errUnknown)
	}
	fl, err := h.Flows()
	if err != nil {
		return errorReply("list_flows", err)
	}
	entries := make([]flowEntry, 0, len(fl))
	for _, f := range fl {
		entries = append(entries, flowEntry{f.Proto, f.Key.NS.String(), f.Key.NSPort, f.Key.Dst.String(), f.Key.DstPort,
			f.State, f.Inbound, f.Age.Milliseconds(), f.ToHost, f.ToNS})
	}
	out, err := json.Marshal(struct {
		Entries []flowEntry `json:"entries"`
	}{entries})
	if err != nil {
		return errorReply("list_flows", err)
	}
	return out
}

// errorReply is an error in slirp4netns's form, for the requests it does
// not have.
func errorReply(what string, err error) []byte {
	out, _ := json.Marshal(map[string]map[string]string{"error": {"desc": "bad request: " + what + ": " + err.Error()}})
	return out
}
