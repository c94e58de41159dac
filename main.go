// Command nsgate gives a network namespace full network access through the
// host's ordinary sockets, with no privileges: it puts a tap device in the
// namespace and serves it from the host side. It accepts slirp4netns's
// command line, so rootlesskit and podman can run it in slirp4netns's place.
package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nsgate/nsgate/internal/api"
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/dns"
	"github.com/nsgate/nsgate/internal/engine"
	"github.com/nsgate/nsgate/internal/netconf"
	"github.com/nsgate/nsgate/internal/nsenter"
	"github.com/nsgate/nsgate/internal/tapdev"
	"golang.org/x/sys/unix"
)

// version is set at build time by the Makefile (-ldflags -X main.version=).
var version = "0.1.0-dev"

var logger = log.New(os.Stderr, "nsgate: ", 0)

func main() {
	switch nsenter.Role() {
	case nsenter.RoleNsenter:
		os.Exit(helperMain())
	case nsenter.RoleSpawn:
		os.Exit(spawnChildMain())
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Parse(args)
	switch {
	case errors.Is(err, config.ErrUsage):
		fmt.Fprint(os.Stderr, config.Usage)
		logger.Print(err)
		return 2
	case err != nil:
		logger.Print(err)
		return 1
	case cfg.Help:
		fmt.Print(config.Usage)
		return 0
	case cfg.Version:
		printVersion()
		return 0
	}
	// Check the inherited fds before nsgate opens any file: a number that is
	// not open now could be reused by the runtime for a descriptor of its own.
	if cfg.ExitFD >= 0 && !claimFD(cfg.ExitFD) {
		// slirp4netns exits when its exit fd is unusable: whoever passed it
		// is gone, or passed garbage.
		logger.Printf("exit fd %d is not usable (not open): exiting", cfg.ExitFD)
		return 0
	}
	if cfg.ReadyFD >= 0 && !claimFD(cfg.ReadyFD) {
		logger.Printf("ready fd %d is not open", cfg.ReadyFD)
		return 1
	}
	if cfg.EnableIPv6 {
		logger.Print("--enable-ipv6: IPv6 is not served by this version; running IPv4 only")
	}
	if cfg.Spawn {
		return runSpawn(cfg)
	}
	return runTarget(cfg)
}

func printVersion() {
	commit := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	// slirp4netns's layout: tools parse the first two lines.
	fmt.Printf("nsgate version %s\ncommit: %s\ngo: %s\n", version, commit, runtime.Version())
}

// request is what the helper does inside the namespace.
func request(cfg *config.Config) nsenter.Request {
	r := nsenter.Request{TapName: cfg.TapName, Configure: cfg.Configure, MTU: cfg.MTU}
	if cfg.Configure {
		r.Addr = netip.PrefixFrom(cfg.Net.Guest.Netip(), cfg.Net.Prefix.Bits()).String()
		r.Gateway = cfg.Net.Gateway.String()
		if cfg.MACSet {
			r.MAC = cfg.MAC.String()
		}
	}
	return r
}

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
		stops = append(stops, stopFD{pidfd, fmt.Sprintf("target PID %d exited", cfg.PID)})
	}
	if cfg.Configure && sameFile(cfg.NetnsPath, "/proc/self/ns/net") {
		// Configuring would replace the default route of the namespace
		// nsgate itself uses; that is never what a caller means.
		logger.Printf("refusing --configure on nsgate's own network namespace (%s)", cfg.NetnsPath)
		return 1
	}
	fd, err := nsenter.OpenTap(cfg.NetnsPath, cfg.UsernsPath, request(cfg))
	if err != nil {
		logger.Print(err)
		return 1
	}
	return serve(cfg, fd, stops, nil)
}

// claimFD reports whether fd is open, and makes it close-on-exec so that
// neither the helper nor a spawned command holds the caller's pipes open.
func claimFD(fd int) bool {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return false
	}
	unix.CloseOnExec(fd)
	return true
}

// sameFile reports whether paths a and b name the same inode (namespaces
// compare this way).
func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

type stopFD struct {
	fd     int
	reason string
}

// serve runs the engine on the tap fd until the exit fd or one of stops
// fires, a signal arrives, or (spawn mode) started() arranges a Stop.
func serve(cfg *config.Config, tapfd int, stops []stopFD, started func(*engine.Engine)) int {
	if cfg.ExitFD >= 0 {
		stops = append(stops, stopFD{cfg.ExitFD, fmt.Sprintf("exit fd %d closed", cfg.ExitFD)})
	}
	tap, err := tapdev.NewDevice(tapfd, tapdev.VnetHdrLen)
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer tap.Close()
	ecfg := engine.Config{
		Net:        cfg.Net,
		MTU:        cfg.MTU,
		DisableDNS: cfg.DisableDNS,
		MAC:        engine.GatewayMAC(cfg.Net.Gateway),
		// Until the UDP/ICMP issue, host loopback is reachable only by TCP.
		DisableHostLoopback: cfg.DisableHostLoopback,
		Logf:                logger.Printf,
	}
	if mac, err := tapdev.HardwareAddr(tapfd); err == nil {
		ecfg.GuestMAC = mac // until the namespace's first frame says
	} else {
		logger.Print(err)
	}
	if !cfg.DisableDNS {
		servers, err := dns.ReadResolvConf("/etc/resolv.conf")
		if err != nil || len(servers) == 0 {
			// Answer SERVFAIL at once rather than let clients time out.
			logger.Printf("no usable IPv4 nameserver in /etc/resolv.conf (%v): DNS queries to %s get SERVFAIL", err, cfg.Net.DNS)
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
	e, err := engine.New(tap, ecfg)
	if err != nil {
		logger.Print(err)
		return 1
	}
	var srv *api.Server
	defer func() {
		e.Close() // first: API requests still waiting for the loop give up
		if srv != nil {
			srv.Close()
		}
	}()
	for _, r := range cfg.Publish {
		if _, err := e.AddForward(r); err != nil {
			logger.Printf("--publish: %v", err)
			return 1
		}
	}
	if cfg.APISocket != "" {
		n := cfg.Net
		srv, err = api.Listen(cfg.APISocket, &api.Handler{
			Fwd:  e.Forwarder(),
			Net:  api.Network{Guest: n.Guest.Netip(), Prefix: n.Prefix, Gateway: n.Gateway.Netip(), DNS: n.DNS.Netip()},
			Logf: logger.Printf,
		})
		if err != nil {
			logger.Print(err)
			return 1
		}
		go srv.Serve()
	}
	for _, s := range stops {
		if err := e.AddStopFD(s.fd, s.reason); err != nil {
			if s.fd == cfg.ExitFD { // open but not pollable, say a regular file
				logger.Printf("exit fd %d is not usable (%v): exiting", s.fd, err)
				return 0
			}
			logger.Printf("watch fd %d: %v", s.fd, err)
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
	if cfg.ReadyFD >= 0 {
		if err := signalReady(cfg.ReadyFD); err != nil {
			logger.Print(err)
			return 1
		}
	}
	reason, err := e.Run()
	if err != nil {
		if errors.Is(err, engine.ErrTapGone) {
			logger.Printf("exiting: %v", err)
			return 0
		}
		logger.Print(err)
		return 1
	}
	if started == nil { // spawn mode stays quiet: the output is the command's
		st := e.Stats()
		_, opened, refused, resets, forwarded := e.TCPStats()
		logger.Printf("exiting: %s (frames in %d, out %d, malformed %d; tcp connections %d (forwarded %d), refused %d, reset %d)",
			reason, st.RxFrames, st.TxFrames, st.Malformed, opened, forwarded, refused, resets)
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

// openTap opens (and configures, if asked) the tap in the current namespace:
// the work of both helper roles.
func openTap(req nsenter.Request) (int, error) {
	fd, err := tapdev.Open(req.TapName)
	if err != nil {
		return -1, err
	}
	if !req.Configure {
		return fd, nil
	}
	p := netconf.Params{Link: req.TapName, MTU: req.MTU}
	p.Addr, err = netip.ParsePrefix(req.Addr)
	if err == nil {
		p.Gateway, err = netip.ParseAddr(req.Gateway)
	}
	if err == nil && req.MAC != "" {
		p.MAC, err = net.ParseMAC(req.MAC)
	}
	if err == nil {
		err = netconf.Configure(p)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// helperMain runs in the re-executed helper, already inside the target's
// namespaces (nsexec.c joined them).
func helperMain() int {
	conn, req, err := nsenter.HelperConn()
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer conn.Close()
	fd, err := openTap(req)
	if err != nil {
		conn.SendError(err)
		return 1
	}
	if err := conn.SendFD(fd); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

// runSpawn is nsgate -- CMD: a child in new user and network namespaces opens
// the tap, hands it over, waits until nsgate serves it, then execs CMD.
func runSpawn(cfg *config.Config) int {
	// Pdeathsig is tied to the thread that started the child: keep it.
	runtime.LockOSThread()
	self, err := os.Executable()
	if err != nil {
		logger.Printf("find own executable: %v", err)
		return 1
	}
	cmd := exec.Command(self)
	cmd.Args = append([]string{"nsgate-spawn"}, cfg.Command...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// Unprivileged users may only map their gid with setgroups denied.
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  unix.SIGKILL,
	}
	conn, err := nsenter.StartHelper(cmd, nsenter.RoleSpawn, request(cfg))
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer conn.Close()
	fd, err := conn.RecvFD()
	if err != nil {
		logger.Print(err)
		_ = cmd.Wait()
		return 1
	}
	status := make(chan int, 1)
	rc := serve(cfg, fd, nil, func(e *engine.Engine) {
		if err := conn.Send('G'); err != nil {
			e.Stop(fmt.Sprintf("command did not start: %v", err))
		}
		sigs := make(chan os.Signal, 1)
		// SIGINT from a terminal reaches the command directly (same process
		// group); nsgate outlives it to serve its network until it exits.
		signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
		go func() {
			for s := range sigs {
				if s != unix.SIGINT {
					_ = cmd.Process.Signal(s)
				}
			}
		}()
		go func() {
			err := cmd.Wait()
			status <- exitStatus(cmd, err)
			e.Stop("command exited")
		}()
	})
	select {
	case s := <-status:
		return s
	default:
		// nsgate stopped first (exit fd, engine error): end the command.
		_ = cmd.Process.Kill()
		select {
		case s := <-status:
			if rc != 0 {
				return rc
			}
			return s
		case <-time.After(5 * time.Second):
			return 1
		}
	}
}

func exitStatus(cmd *exec.Cmd, err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	logger.Printf("wait for %s: %v", cmd.Args[1], err)
	return 1
}

// spawnChildMain runs in the child of nsgate -- CMD, inside fresh user and
// network namespaces, with the caller mapped to root.
func spawnChildMain() int {
	conn, req, err := nsenter.HelperConn()
	if err != nil {
		logger.Print(err)
		return 1
	}
	fd, err := openTap(req)
	if err != nil {
		conn.SendError(err)
		return 1
	}
	if err := conn.SendFD(fd); err != nil {
		logger.Print(err)
		return 1
	}
	unix.Close(fd)
	// Wait until nsgate serves the tap, so that CMD finds a working network.
	if _, err := conn.Recv(); err != nil {
		return 1 // nsgate failed and has said why
	}
	conn.Close()
	argv := os.Args[1:]
	path, err := exec.LookPath(argv[0])
	if err != nil {
		logger.Printf("%s: command not found", argv[0])
		return 127
	}
	err = syscall.Exec(path, argv, os.Environ())
	logger.Printf("exec %s: %v", path, err)
	return 126
}
