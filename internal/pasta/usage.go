package pasta

// Usage is pasta --help's text: the options nsgate implements in pasta
// mode. Others of pasta's are refused with a message saying so.
const Usage = `Usage: pasta [OPTION]... [COMMAND] [ARGS]...
       pasta [OPTION]... PID
       pasta [OPTION]... --netns [PATH|NAME]

nsgate, invoked as pasta: pasta's command line and semantics, nsgate's data
path. Without PID or --netns, run COMMAND (default: $SHELL) in a new network
and user namespace.

  -a, --address ADDR	Assign IPv4 or IPv6 address ADDR (once per family)
    default: the address of the host's interface with the default route
  -n, --netmask MASK	IPv4 netmask, dot-decimal or bits; default: the host's
  -g, --gateway ADDR	IPv4 or IPv6 gateway; default: the host's
  --dns-forward ADDR	Relay DNS queries sent to ADDR to the host's resolvers
  -D, --dns ADDR	The one nameserver DHCP announces (IPv4)
  --map-host-loopback ADDR  ADDR reaches the host's loopback; default: gateway
  --map-guest-addr ADDR	ADDR reaches the host's own address
  --no-map-gw		The gateway is the real router, not the host
  -o, --outbound ADDR	Source address of outbound connections
  -4, --ipv4-only	IPv4 only
  -6, --ipv6-only	IPv6 only
  -m, --mtu MTU		MTU of the namespace's interface; default: 65520
  -I, --ns-ifname NAME	Namespace interface name; default: the host's
  --config-net		Configure the namespace's interface, address and routes
  -t, --tcp-ports SPEC	TCP ports forwarded from the host to the namespace
  -u, --udp-ports SPEC	UDP ports forwarded from the host to the namespace
    SPEC: none, auto (default: follow the namespace's bound ports),
    or [ADDR[%IFNAME]/]PORT[-PORT][:PORT[-PORT]][,...] with ~PORT exclusions
  -T, --tcp-ns none	 Namespace ports to the host: only none
  -U, --udp-ns none
  --netns PATH|NAME	Target network namespace (NAME: /run/netns/NAME)
  --userns PATH		User namespace to join with --netns
  -f, --foreground	Stay in the foreground
  -q, --quiet		Print nothing on success
  -d, --debug		Accepted; nsgate has no debug output
  -e, --stderr		Keep logging to stderr once daemonized
  -l, --log-file PATH	Log to PATH once daemonized
  -P, --pid FILE	Write the daemon's PID to FILE
  -p, --pcap FILE	Record the namespace's frames to FILE
  --no-sandbox		Serve without nsgate's sandbox and seccomp filter
  -h, --help		This text
  --version		Version
`
