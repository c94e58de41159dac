//go:build integration

package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/nsgate/nsgate/internal/tapdev"
	"github.com/nsgate/nsgate/internal/testnet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestConfigure(t *testing.T) {
	err := testnet.InNewNetns(func() error {
		fd, _, err := tapdev.Open("tap0")
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		mac, _ := net.ParseMAC("02:12:34:56:78:9a")
		p := Params{
			Link:    "tap0",
			MTU:     65520,
			Addr:    netip.MustParsePrefix("10.0.2.100/24"),
			Gateway: netip.MustParseAddr("10.0.2.2"),
			MAC:     mac,
		}
		// Twice: configuring an already configured tap must succeed.
		for i := 0; i < 2; i++ {
			if err := Configure(p); err != nil {
				return fmt.Errorf("Configure #%d: %w", i+1, err)
			}
		}
		link, err := netlink.LinkByName("tap0")
		if err != nil {
			return err
		}
		a := link.Attrs()
		if a.MTU != 65520 || a.HardwareAddr.String() != "02:12:34:56:78:9a" || a.Flags&net.FlagUp == 0 {
			return fmt.Errorf("link: mtu %d mac %s flags %v", a.MTU, a.HardwareAddr, a.Flags)
		}
		addrs, err := netlink.AddrList(link, unix.AF_INET)
		if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.0.2.100/24" {
			return fmt.Errorf("addresses %v, %v", addrs, err)
		}
		routes, err := netlink.RouteList(link, unix.AF_INET)
		if err != nil {
			return err
		}
		def := 0
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.0.2.2" {
				def++
			}
		}
		if def != 1 {
			return fmt.Errorf("want one default route via 10.0.2.2, routes: %v", routes)
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("lo not up: %v", err)
		}
		if err := Configure(Params{Link: "nosuch", MTU: 1500}); err == nil {
			return fmt.Errorf("configured a link that does not exist")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
