package pasta

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nsgate/nsgate/internal/publish"
)

// PortMode is what a -t/-u/-T/-U option asks for.
type PortMode int

// Port modes, as pasta(1) names them.
const (
	PortsUnset PortMode = iota // not given: the caller's default applies
	PortsNone                  // none
	PortsAuto                  // auto: follow the ports bound on the other side
	PortsAll                   // all: every non-ephemeral port, less exclusions
	PortsSpec                  // explicit ports
)

// Range forwards host ports First..Last to Target.. in the namespace, bound
// to Addr (invalid: every address of both families) and, if Iface is set,
// to that interface only.
type Range struct {
	Addr        netip.Addr
	Iface       string
	First, Last uint16
	Target      uint16 // the namespace port First maps to
}

// Ports is the accumulated value of one of -t, -u, -T, -U.
type Ports struct {
	Mode     PortMode
	Ranges   []Range
	Excluded [][2]uint16 // ~FIRST-LAST: not forwarded (all, auto, or a range)
}

// Excludes reports whether port p is excluded.
func (p *Ports) Excludes(port uint16) bool {
	for _, x := range p.Excluded {
		if port >= x[0] && port <= x[1] {
			return true
		}
	}
	return false
}

// Add parses one SPEC for option opt and merges it into p:
//
//	none | auto | all
//	[ADDR[%IFNAME]/]PORTS      (also %IFNAME/PORTS)
//
// where PORTS is a comma-separated list of PORT, FIRST-LAST, either with
// :TARGET or :TFIRST-TLAST to remap (same length), and ~PORT or ~FIRST-LAST
// exclusions. A list of exclusions only means all ports but those.
func (p *Ports) Add(opt, spec string) error {
	bad := func(why string) error { return fmt.Errorf("invalid port specifier %q for %s: %s", spec, opt, why) }
	switch spec {
	case "none", "auto", "all":
		if p.Mode != PortsUnset {
			return bad("'" + spec + "' cannot be combined with other port specifiers")
		}
		p.Mode = map[string]PortMode{"none": PortsNone, "auto": PortsAuto, "all": PortsAll}[spec]
		return nil
	case "":
		return bad("empty")
	}
	if p.Mode == PortsNone || p.Mode == PortsAuto || p.Mode == PortsAll {
		return bad("ports cannot be given after none, auto or all")
	}
	var addr netip.Addr
	var iface string
	list := spec
	if i := strings.LastIndexByte(spec, '/'); i >= 0 {
		a := spec[:i]
		list = spec[i+1:]
		if j := strings.IndexByte(a, '%'); j >= 0 {
			a, iface = a[:j], a[j+1:]
			if iface == "" || len(iface) > 15 || strings.ContainsAny(iface, "/ ") {
				return bad("interface name " + strconv.Quote(iface) + " is not valid")
			}
		}
		if a != "" {
			var err error
			if addr, err = netip.ParseAddr(a); err != nil || addr.Zone() != "" {
				return bad("address " + strconv.Quote(a) + " is not an IPv4 or IPv6 address")
			}
			addr = addr.Unmap()
		}
	}
	var ranges []Range
	for _, item := range strings.Split(list, ",") {
		if x, ok := strings.CutPrefix(item, "~"); ok {
			lo, hi, err := portRange(x)
			if err != nil {
				return bad(err.Error())
			}
			p.Excluded = append(p.Excluded, [2]uint16{lo, hi})
			continue
		}
		from, to, remap := strings.Cut(item, ":")
		lo, hi, err := portRange(from)
		if err != nil {
			return bad(err.Error())
		}
		r := Range{Addr: addr, Iface: iface, First: lo, Last: hi, Target: lo}
		if remap {
			tlo, thi, err := portRange(to)
			if err != nil {
				return bad(err.Error())
			}
			if thi-tlo != hi-lo {
				return bad(fmt.Sprintf("%d-%d and %d-%d are ranges of different lengths", lo, hi, tlo, thi))
			}
			r.Target = tlo
		}
		ranges = append(ranges, r)
	}
	if len(ranges) == 0 {
		// Only exclusions: all ports but those.
		if p.Mode == PortsSpec {
			return bad("exclusions alone cannot follow explicit ports")
		}
		p.Mode = PortsAll
		return nil
	}
	p.Mode = PortsSpec
	p.Ranges = append(p.Ranges, ranges...)
	return nil
}

// portRange is publish.PortRange, in the port type.
func portRange(s string) (lo, hi uint16, err error) {
	l, h, err := publish.PortRange(s)
	return uint16(l), uint16(h), err
}
