package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"

	"github.com/nsgate/nsgate/internal/api"
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/dns"
	"github.com/nsgate/nsgate/internal/engine"
	"github.com/nsgate/nsgate/internal/fileref"
	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/fwd"
	"github.com/nsgate/nsgate/internal/kernel"
	"github.com/nsgate/nsgate/internal/nsenter"
	"github.com/nsgate/nsgate/internal/pcap"
	"github.com/nsgate/nsgate/internal/policy"
	"github.com/nsgate/nsgate/internal/ratelog"
	"github.com/nsgate/nsgate/internal/seccomp"
	"github.com/nsgate/nsgate/internal/tapdev"
	"golang.org/x/sys/unix"
)

// runTarget serves an existing namespace: nsgate PID|PATH [TAPNAME].
func runTarget(cfg *config.Config) int {
	var stops []stopFD
	if cfg.PID > 0 {
		// Open the pidfd before anything else, so that a target exiting
		// during set-up is still noticed.
		pidfd, err := unix.PidfdOpen(cfg.PID, 0)
		if err != nil {
			logger.Printf("target PID %d: pidfd_open: %v", cfg.PID, err)
			return 1
		}
		defer unix.Close(pidfd)
		stops = append(stops, stopFD{FD: pidfd, Reason: fmt.Sprintf("target PID %d exited", cfg.PID)})
	}
	if cfg.Pasta != nil && cfg.Pasta.WatchNetns {
		s, err := watchNetns(cfg.NetnsPath)
		if err != nil {
			logger.Print(err)
			return 1
		}
		defer unix.Close(s.FD)
		stops = append(stops, s)
	}
	if cfg.Configure && sameFile(cfg.NetnsPath, "/proc/self/ns/net") {
		// Configuring would replace the default route of the namespace
		// nsgate itself uses; that is never what a caller means.
		logger.Printf("refusing --configure on nsgate's own network namespace (%s): give the PID or namespace file of the target", cfg.NetnsPath)
		return 1
	}
	fds, err := nsenter.OpenTap(cfg.NetnsPath, cfg.UsernsPath, request(cfg))
	if err != nil {
		logger.Print(err)
		return 1
	}
	fd := fds[0]
	p, err := prepare(cfg)
	if err != nil {
		logger.Print(err)
		for _, f := range fds {
			unix.Close(f)
		}
		return 1
	}
	p.procNet = fds[1:] // p.close closes them
	if cfg.EnableSandbox {
		return execSandbox(cfg, fd, nil, stops, p)
	}
	dev, err := tapDevice(fd)
	if err != nil {
		logger.Print(err)
		return 1
	}
	return serve(cfg, dev, stops, p, nil)
}

// frameDevice is what serve runs the engine on: a tap (tapdev.Device) or a
// VM's stream socket (vmsock.Port).
type frameDevice interface {
	engine.Tap
	Close() error
}

// tapDevice wraps the tap fd the helper opened.
func tapDevice(fd int) (frameDevice, error) {
	return tapdev.NewDevice(fd, tapdev.VnetHdrLen)
}

// request is what the helper does inside the namespace.
func request(cfg *config.Config) nsenter.Request {
	r := nsenter.Request{TapName: cfg.TapName, Configure: cfg.Configure, MTU: cfg.MTU}
	if cfg.Configure {
		r.Addr = netip.PrefixFrom(cfg.Net.Guest, cfg.Net.Prefix.Bits()).String()
		r.Gateway = cfg.Net.Gateway.String()
		if cfg.MACSet {
			r.MAC = cfg.MAC.String()
		}
		if cfg.EnableIPv6 {
			r.Prefix6, r.Router6 = cfg.Net6.Prefix.String(), cfg.Net6.LinkLocal.String()
		}
	}
	if p := cfg.Pasta; p != nil {
		r.ProcNet = p.AutoTCP || p.AutoUDP
		r.Quiet = p.Quiet
		if p.NoIPv4 {
			r.Addr, r.Gateway = "", ""
		}
		if cfg.Configure && cfg.EnableIPv6 {
			// pasta's addresses: given or the host's, not autoconfigured;
			// the route goes via the gateway it names.
			r.Addr6 = netip.PrefixFrom(cfg.Net6.Guest, cfg.Net6.Prefix.Bits()).String()
			r.Router6 = cfg.Net6.Gateway.String()
		}
	}
	return r
}

// prepared holds what nsgate opens before serving, while it can still
// reach the filesystem and bind any port it may: the -p listeners, the
// API socket and the PID file. The sandbox takes them away.
type prepared struct {
	fwdFDs  []int       // one per cfg.Publish, in order
	api     *api.Server // nil without -a
	pidFile fileref.Ref // removed on exit; none without --pid-file
	pcap    *os.File    // --pcap's file, opened for pcap.New; nil without
	// procNet are the namespace's nsenter.ProcNetFiles (pasta's -t auto);
	// empty without.
	procNet []int
	// detach is what the standard streams become once a pasta daemon is
	// ready: its --log-file, or /dev/null. nil otherwise.
	detach *os.File
}

func prepare(cfg *config.Config) (*prepared, error) {
	p := &prepared{pidFile: fileref.Ref{Dir: -1}}
	for _, r := range cfg.Publish {
		fd, err := fwd.Listen(r)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("--publish: %w", err)
		}
		p.fwdFDs = append(p.fwdFDs, fd)
	}
	if cfg.Pcap != "" {
		f, err := pcap.Open(cfg.Pcap)
		if err != nil {
			p.close()
			return nil, err
		}
		p.pcap = f
	}
	if cfg.APISocket != "" {
		s, err := api.Listen(cfg.APISocket)
		if err != nil {
			p.close()
			return nil, err
		}
		p.api = s
	}
	if cfg.Pasta != nil && cfg.Pasta.Daemon {
		name, flags := os.DevNull, os.O_RDWR
		if cfg.Pasta.LogFile != "" {
			name, flags = cfg.Pasta.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND
		}
		f, err := os.OpenFile(name, flags, 0o600)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("log file: %w", err)
		}
		p.detach = f
	}
	if cfg.PIDFile != "" {
		// The process keeps its PID across the sandbox's exec.
		if err := os.WriteFile(cfg.PIDFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
			p.close()
			return nil, fmt.Errorf("--pid-file: %w", err)
		}
		p.pidFile = fileref.ByPath(cfg.PIDFile)
	}
	return p, nil
}

func (p *prepared) close() {
	for _, fd := range p.fwdFDs {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	p.fwdFDs = nil
	if p.pcap != nil {
		p.pcap.Close()
		p.pcap = nil
	}
	if p.api != nil {
		p.api.Close()
		p.api = nil
	}
	for _, fd := range p.procNet {
		unix.Close(fd)
	}
	p.procNet = nil
	if p.detach != nil {
		p.detach.Close()
		p.detach = nil
	}
	p.pidFile.Remove()
}

// sameFile reports whether paths a and b name the same inode (namespaces
// compare this way).
func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

type stopFD struct {
	FD     int
	Reason string
	// Name, if set, makes FD an inotify descriptor on a directory, and
	// the stop the deletion of the file Name in it (watchName).
	Name string `json:",omitempty"`
}

// serve runs the engine on dev until the exit fd or one of stops fires, a
// signal arrives, a VM leaves (--fd, --one-off), or (spawn mode) started()
// arranges a Stop.
func serve(cfg *config.Config, dev frameDevice, stops []stopFD, p *prepared, started func(*engine.Engine)) int {
	var e *engine.Engine
	// What the namespace's traffic and API clients can make nsgate say is
	// folded, so that no flood fills the log (internal/ratelog).
	folded := ratelog.New(func(line string) { logger.Print(line) }, 0)
	defer func() {
		folded.Close()
		if e != nil {
			e.Close() // first: API requests still waiting for the loop give up
		}
		p.close()   // on every way out: the API socket and PID files go
		dev.Close() // and the VM socket's
	}()
	if cfg.ExitFD >= 0 {
		stops = append(stops, stopFD{FD: cfg.ExitFD, Reason: fmt.Sprintf("exit fd %d closed", cfg.ExitFD)})
	}
	ecfg := engine.Config{
		Net:        cfg.Net,
		IPv6:       cfg.EnableIPv6,
		Net6:       cfg.Net6,
		MTU:        cfg.MTU,
		DisableDNS: cfg.DisableDNS,
		NameServer: cfg.DNS,
		MAC:        engine.GatewayMAC(cfg.Net.Gateway),
		// The gateway address is the host's loopback, for TCP and UDP alike.
		DisableHostLoopback: cfg.DisableHostLoopback,
		Logf:                folded.Printf,
		Kernel:              kernel.Probe(),
		OneOff:              cfg.OneOff,
		Pasta:               cfg.Pasta,
	}
	if !ecfg.Kernel.TCPPeekOff && started == nil && !pastaQuiet(cfg) { // spawn mode stays quiet
		logger.Printf("TCP sockets here lack SO_PEEK_OFF (Linux 6.9; or %s=1): host data is copied until the namespace acknowledges it", kernel.NoPeekOffEnv)
	}
	ecfg.Outbound, ecfg.Outbound6 = cfg.OutboundAddr, cfg.OutboundAddr6
	if _, ok := dev.(*tapdev.Device); ok {
		if mac, err := tapdev.HardwareAddr(dev.Fd()); err == nil {
			ecfg.GuestMAC = mac // until the namespace's first frame says
		} else {
			logger.Print(err)
		}
	}
	if !cfg.DisableDNS {
		servers, err := dns.ReadResolvConf("/etc/resolv.conf")
		if err != nil || len(servers) == 0 {
			// Answer SERVFAIL at once rather than let clients time out.
			logger.Printf("no usable nameserver in /etc/resolv.conf (%v): DNS queries to %s get SERVFAIL (add a nameserver line, or point the namespace elsewhere with --dns ADDR)", err, cfg.Net.DNS)
		}
		ecfg.DNSServers = servers
	}
	if s := os.Getenv("NSGATE_TEST_IMPAIR"); s != "" {
		// Loss and reordering on the tap, for tests: the test kernel has no
		// sch_netem. Deliberately not a command-line option.
		im, err := engine.ParseImpairment(s)
		if err != nil {
			logger.Print(err)
			return 1
		}
		logger.Printf("NSGATE_TEST_IMPAIR: dropping %.2f%% and reordering %.2f%% of frames", im.Loss*100, im.Reorder*100)
		ecfg.Impair = &im
	}
	ecfg.BusyPoll = cfg.BusyPoll
	var err error
	if ecfg.Limits, err = flow.Derive(flow.NoFile(), cfg.MaxFlows); err != nil {
		logger.Print(err)
		return 1
	}
	if len(cfg.Egress) > 0 {
		ecfg.Policy = &policy.Policy{Rules: cfg.Egress}
		if ecfg.Policy.NeedsHost() {
			h, err := policy.WatchHostAddrs()
			if err != nil {
				logger.Print(err)
				return 1
			}
			defer h.Close()
			ecfg.Policy.SetHost(h)
		}
	}
	if p.pcap != nil {
		w, err := pcap.New(p.pcap, cfg.PcapMax)
		p.pcap = nil // the writer's now, even on error
		if err != nil {
			logger.Print(err)
			return 1
		}
		defer w.Close() // serve returns only once the loop has stopped
		ecfg.Pcap = w
	}
	e, err = engine.New(dev, ecfg)
	if err != nil {
		logger.Print(err)
		return 1
	}
	for i, r := range cfg.Publish {
		fd := p.fwdFDs[i]
		p.fwdFDs[i] = -1 // the engine's now, even on error
		if _, err := e.AddForwardFD(r, fd); err != nil {
			logger.Printf("--publish: %v", err)
			return 1
		}
	}
	if p.api != nil {
		n := cfg.Net
		in := e.Inspector()
		go p.api.Serve(&api.Handler{
			Fwd: e.Forwarder(),
			Net: api.Network{Guest: n.Guest, Prefix: n.Prefix, Gateway: n.Gateway, DNS: n.DNS,
				IPv6: cfg.EnableIPv6, Prefix6: cfg.Net6.Prefix, Gateway6: cfg.Net6.Gateway, DNS6: cfg.Net6.DNS},
			Stats: func() (any, error) { return in.Stats() },
			Flows: in.Flows,
			Logf:  folded.Printf,
		})
	}
	for _, s := range stops {
		if s.Name != "" {
			continue // pastaServing watches it
		}
		if err := e.AddStopFD(s.FD, s.Reason); err != nil {
			if s.FD == cfg.ExitFD { // open but not pollable, say a regular file
				logger.Printf("exit fd %d is not usable (%v): exiting", s.FD, err)
				return 0
			}
			logger.Printf("watch fd %d, which is to end nsgate (%q): %v", s.FD, s.Reason, err)
			return 1
		}
	}
	if started == nil {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
		go func() { e.Stop("signal: " + (<-sigs).String()) }()
	} else {
		started(e)
	}
	stopPasta := pastaServing(e, cfg, stops, p, folded.Printf)
	defer stopPasta() // before the deferred close of what it reads
	if p.detach != nil {
		// A pasta daemon's parent returns once it is ready, and its caller
		// reads the output to its end: let go of the caller's streams.
		// Before seccomp, which does not allow dup3.
		last := 2
		if cfg.Pasta.Stderr {
			last = 1 // -e: the log stays on standard error
		}
		for fd := 0; fd <= last; fd++ {
			if err := unix.Dup3(int(p.detach.Fd()), fd, 0); err != nil {
				logger.Printf("detach from standard streams: %v", err)
				return 1
			}
		}
	}
	if cfg.EnableSeccomp {
		// Last: everything above may use calls the filter refuses.
		if err := seccomp.Apply(); err != nil {
			logger.Printf("--enable-seccomp: %v", err)
			return 1
		}
	}
	if cfg.ReadyFD >= 0 {
		if err := signalReady(cfg.ReadyFD); err != nil {
			logger.Print(err)
			return 1
		}
	}
	reason, err := e.Run()
	folded.Close() // the last summaries come before the exit line
	if err != nil {
		if errors.Is(err, engine.ErrTapGone) {
			logger.Printf("exiting: %v", err)
			return 0
		}
		logger.Print(err)
		return 1
	}
	if started == nil && !pastaQuiet(cfg) { // spawn mode stays quiet: the output is the command's
		c := e.Counters()
		st := c.Frames
		logger.Printf("exiting: %s (frames in %d, out %d, malformed %d, bad vnet headers %d, ignored %d, dropped at a full tap %d; "+
			"tcp connections %d (forwarded %d), refused %d, reset %d, refused at the flow limit %d, reset at the half-open limit %d, denied %d; "+
			"udp flows %d, datagrams dropped %d, icmp errors %d, refused at the flow limit %d, evicted %d, denied %d; icmp denied %d)",
			reason, st.RxFrames, st.TxFrames, st.Malformed, st.BadOffload, st.Ignored, st.TxErrors,
			c.TCP.Opened, c.TCP.Forwarded, c.TCP.Refused, c.TCP.Reset, c.TCP.LimitRefused, c.TCP.HalfOpenReset, c.TCP.Denied,
			c.UDP.Opened, c.UDP.Dropped, c.UDP.ICMPErrors, c.UDP.LimitRefused, c.UDP.Evicted, c.UDP.Denied, c.ICMP.Denied)
	}
	return 0
}

// signalReady writes "1" to the ready fd and closes it, as slirp4netns does.
func signalReady(fd int) error {
	for {
		_, err := unix.Write(fd, []byte("1"))
		if err == unix.EINTR {
			continue
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("write to ready fd %d: %w", fd, err)
		}
		return nil
	}
}
