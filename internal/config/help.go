package config

import "github.com/nsgate/nsgate/internal/kernel"

// Usage is the --help text. rootlesskit and podman grep it for option names
// to learn what the binary supports (and then pass them), so it lists only
// options that work.
const Usage = `Usage: nsgate [OPTION]... PID|PATH [TAPNAME]
       nsgate [OPTION]... --netns PATH [TAPNAME]
       nsgate [OPTION]... -- CMD [ARG]...
       nsgate [OPTION]... --socket PATH | --fd FD
User-mode networking for unprivileged network namespaces: a tap device in the
target namespace, served from the host's ordinary sockets (slirp4netns-compatible).
With --socket or --fd it serves a qemu VM instead (passt's socket mode).

Target:
  PID                      the network (and user) namespace of process PID
  PATH                     a network namespace file, e.g. /proc/PID/ns/net
  TAPNAME                  tap to create or attach to (default=tap0)
  -- CMD [ARG]...          run CMD in a new user+network namespace (the caller
                           mapped to root, as unshare -r) with the tap configured;
                           exit with CMD's exit status
  --netns=PATH             network namespace file (same as --netns-type=path PATH)
  --netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
  --userns-path=PATH       user namespace to join before the network namespace
  --userns=PATH            same as --userns-path
  --target-type=TYPE       specify the target type (netns only; bess is refused)

VM (qemu -netdev stream,id=n0,server=off,addr.type=unix,addr.path=PATH
    -device virtio-net-pci,netdev=n0):
  -s, --socket=PATH        listen on the unix socket PATH for a VM (a stale socket
                           file is replaced; the file is removed on exit); after
                           the VM disconnects, wait for the next (a reboot)
  -F, --fd=FD              serve the VM on FD, an already connected stream socket
                           (libvirt, a socketpair); exit when it disconnects
  -1, --one-off            with --socket: exit 0 when the VM disconnects
  The VM gets the same network: DHCP leases 10.0.2.15, gateway 10.0.2.2, DNS
  10.0.2.3, -p and -a forward into it; MTU 65520 unless -m.

Options:
  -c, --configure          bring up the interface: address network+100, MTU,
                           default route via network+2, lo up
  -e, --exit-fd=FD         specify the FD for terminating nsgate (exit 0 on hang-up)
  -r, --ready-fd=FD        specify the FD to write "1" to when the network is ready
  -m, --mtu=MTU            specify MTU (default=1500, and 65520 with -- CMD or
                           a VM; max=65521)
  --cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
  --cidr6=PREFIX/64        the IPv6 prefix served with -6 (default=fd00::/64):
                           gateway ::2 (the host's ::1), DNS ::3, router fe80::2
  --macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
  --disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
                           (10.0.2.2 is then unreachable for TCP and UDP, as
                           with slirp4netns: ICMP network unreachable)
  --disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns
                           redirect (DHCP then offers no DNS server)
  --dns=ADDR               tell the namespace to use nameserver ADDR (DHCP, and
                           the resolv.conf of -- CMD) instead of 10.0.2.3
  -6, --enable-ipv6        enable IPv6: router advertisements of --cidr6, neighbour
                           discovery, ping of the gateway, TCP and UDP over IPv6
  -a, --api-socket=PATH    specify API socket path (slirp4netns's JSON API:
                           add_hostfwd, list_hostfwd, remove_hostfwd; and
                           get_stats, list_flows)
  -p, --publish=[HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]
                           forward a host port into the namespace (repeatable;
                           ranges as 8000-8009:9000-9009; HOSTADDR defaults
                           to 0.0.0.0, GUESTPORT to HOSTPORT, the protocol to tcp)
  --enable-sandbox         create a new mount namespace (and drop all caps except
                           CAP_NET_BIND_SERVICE): only /etc and /run remain, read-only
  --enable-seccomp         enable seccomp to limit syscalls
  --outbound-addr=IPv4     sets outbound ipv4 address to bound to (an address or
                           an interface name; TCP and UDP)
  --outbound-addr6=IPv6    sets outbound ipv6 address to bound to (an address or
                           an interface name; TCP and UDP)
  -P, --pid-file=FILE      write nsgate's PID to FILE once it serves; removed on exit

Limits, egress policy and visibility:
  --max-flows=N            flows of all protocols together (default: 65536, or
                           what RLIMIT_NOFILE leaves after a reserve of 1/16);
                           1/16 of them may be TCP handshakes at once (a SYN
                           flood resets the oldest), half may be UDP
  --deny=ADDR[/LEN][:PORT[-PORT]]
                           refuse flows to these host addresses (and ports;
                           IPv6 as [ADDR/LEN]:PORT) with ICMP administratively
                           prohibited; repeatable, the first match wins
  --allow=ADDR[/LEN][:PORT[-PORT]]
                           allow them (before a broader --deny); default allow
  --block-host             deny every address of the host itself (loopback and
                           each interface's, kept current); DNS via 10.0.2.3
                           still works
  --pcap=FILE              record every frame on the tap to FILE (tcpdump -r)
  --pcap-max=SIZE          stop recording at SIZE bytes (K, M, G; default 1G)
  --busy-poll=DURATION     during request/response traffic, poll this long for
                           the answer before sleeping (default 100us; 0: never)
  -h, --help               show this help and exit
  -v, --version            show version and exit

Kernels: Linux ` + kernel.Oldest + ` or later (tested on 5.10, 6.1 and 6.18). Before 6.9,
TCP keeps its own copy of unacknowledged bytes (no SO_PEEK_OFF); see
docs/kernels.md.

The manual: man nsgate (make install puts it there; docs/nsgate.1.md).
`
