// Command nsgate gives a network namespace full network access through the
// host's ordinary sockets, with no privileges: it puts a tap device in the
// namespace and serves it from the host side. It accepts slirp4netns's
// command line, so rootlesskit and podman can run it in slirp4netns's place.
package main

import (
	"encoding/json"
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
	"github.com/nsgate/nsgate/internal/fwd"
	"github.com/nsgate/nsgate/internal/kernel"
	"github.com/nsgate/nsgate/internal/netconf"
	"github.com/nsgate/nsgate/internal/nsenter"
	"github.com/nsgate/nsgate/internal/sandbox"
	"github.com/nsgate/nsgate/internal/seccomp"
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
	case sandbox.Role:
		os.Exit(sandboxedMain())
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
	// One clear error for a kernel below the floor, not failures later.
	if err := kernel.Check(); err != nil {
		logger.Print(err)
		return 1
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
	p, err := prepare(cfg)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if cfg.EnableSandbox {
		return execSandbox(cfg, fd, stops, p)
	}
	return serve(cfg, fd, stops, p, nil)
}

// prepared holds what nsgate opens before serving, while it can still
// reach the filesystem and bind any port it may: the -p listeners and the
// API socket. The sandbox takes both away.
type prepared struct {
	fwdFDs []int       // one per cfg.Publish, in order
	api    *api.Server // nil without -a
}

func prepare(cfg *config.Config) (*prepared, error) {
	p := &prepared{}
	for _, r := range cfg.Publish {
		fd, err := fwd.Listen(r)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("--publish: %w", err)
		}
		p.fwdFDs = append(p.fwdFDs, fd)
	}
	if cfg.APISocket != "" {
		s, err := api.Listen(cfg.APISocket)
		if err != nil {
			p.close()
			return nil, err
		}
		p.api = s
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
	if p.api != nil {
		p.api.Close()
		p.api = nil
	}
}

// handoff is what nsgate passes to itself across the exec into the
// sandbox (environment variable _NSGATE_HANDOFF): the parsed command line,
// which could not be checked again in there, and its open descriptors.
type handoff struct {
	Config  *config.Config
	Tap     int
	Stops   []stopFD
	Fwd     []int
	API     int // -1: none
	APIDir  int
	APIName string
}

const envHandoff = "_NSGATE_HANDOFF"

// execSandbox re-executes nsgate into the sandbox (see internal/sandbox).
// It returns only on failure.
func execSandbox(cfg *config.Config, tap int, stops []stopFD, p *prepared) int {
	h := handoff{Config: cfg, Tap: tap, Stops: stops, Fwd: p.fwdFDs, API: -1, APIDir: -1}
	keep := append([]int{tap}, p.fwdFDs...)
	for _, s := range stops {
		keep = append(keep, s.FD)
	}
	for _, fd := range []int{cfg.ExitFD, cfg.ReadyFD} {
		if fd >= 0 {
			keep = append(keep, fd)
		}
	}
	if p.api != nil {
		var err error
		if h.API, h.APIDir, h.APIName, err = p.api.Handoff(); err != nil {
			logger.Print(err)
			p.close()
			return 1
		}
		keep = append(keep, h.API, h.APIDir)
	}
	js, err := json.Marshal(h)
	if err == nil {
		err = sandbox.Exec(keep, append(os.Environ(), envHandoff+"="+string(js)))
	}
	logger.Print(err)
	p.close()
	return 1
}

// sandboxedMain continues runTarget inside the sandbox, which sandbox.c
// has built before the Go runtime started.
func sandboxedMain() int {
	var h handoff
	err := json.Unmarshal([]byte(os.Getenv(envHandoff)), &h)
	os.Unsetenv(envHandoff)
	os.Unsetenv("_NSGATE_ROLE")
	if err != nil || h.Config == nil {
		logger.Printf("--enable-sandbox: no usable hand-off from the parent (%v)", err)
		return 1
	}
	cfg := h.Config
	for _, fd := range append(append([]int{h.Tap, h.APIDir}, h.Fwd...), cfg.ExitFD, cfg.ReadyFD) {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	for _, s := range h.Stops {
		unix.CloseOnExec(s.FD)
	}
	p := &prepared{fwdFDs: h.Fwd}
	if h.API >= 0 {
		if p.api, err = api.FromFD(cfg.APISocket, h.API, h.APIDir, h.APIName); err != nil {
			logger.Print(err)
			return 1
		}
	}
	return serve(cfg, h.Tap, h.Stops, p, nil)
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
	FD     int
	Reason string
}

// serve runs the engine on the tap fd until the exit fd or one of stops
// fires, a signal arrives, or (spawn mode) started() arranges a Stop.
func serve(cfg *config.Config, tapfd int, stops []stopFD, p *prepared, started func(*engine.Engine)) int {
	var e *engine.Engine
	defer func() {
		if e != nil {
			e.Close() // first: API requests still waiting for the loop give up
		}
		p.close() // on every way out: the API socket file goes
	}()
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
		Kernel:              kernel.Probe(),
	}
	if !ecfg.Kernel.TCPPeekOff && started == nil { // spawn mode stays quiet
		logger.Printf("TCP sockets here lack SO_PEEK_OFF (Linux 6.9; or %s=1): host data is copied until the namespace acknowledges it", kernel.NoPeekOffEnv)
	}
	if cfg.OutboundAddr.IsValid() {
		ecfg.Outbound = cfg.OutboundAddr.As4()
	}
	if cfg.OutboundAddr6.IsValid() {
		logger.Printf("--outbound-addr6 %s: IPv6 is not served by this version; the address is unused", cfg.OutboundAddr6)
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
	e, err = engine.New(tap, ecfg)
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
		go p.api.Serve(&api.Handler{
			Fwd:  e.Forwarder(),
			Net:  api.Network{Guest: n.Guest.Netip(), Prefix: n.Prefix, Gateway: n.Gateway.Netip(), DNS: n.DNS.Netip()},
			Logf: logger.Printf,
		})
	}
	for _, s := range stops {
		if err := e.AddStopFD(s.FD, s.Reason); err != nil {
			if s.FD == cfg.ExitFD { // open but not pollable, say a regular file
				logger.Printf("exit fd %d is not usable (%v): exiting", s.FD, err)
				return 0
			}
			logger.Printf("watch fd %d: %v", s.FD, err)
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
	p, err := prepare(cfg)
	if err != nil {
		logger.Print(err)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 1
	}
	status := make(chan int, 1)
	rc := serve(cfg, fd, nil, p, func(e *engine.Engine) {
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
