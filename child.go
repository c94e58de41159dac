package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/engine"
	"github.com/nsgate/nsgate/internal/netconf"
	"github.com/nsgate/nsgate/internal/nsenter"
	"github.com/nsgate/nsgate/internal/tapdev"
	"golang.org/x/sys/unix"
)

// openTap opens (and configures, if asked) the tap in the current namespace:
// the work of both helper roles. quiet keeps spawn mode's output the
// command's own.
func openTap(req nsenter.Request, quiet bool) (int, error) {
	fd, got, err := tapdev.Open(req.TapName)
	if err != nil {
		return -1, err
	}
	if got != tapdev.OffloadsFull && !quiet {
		// Frames still flow: the namespace's kernel segments and sums in
		// software what the tap may not take. Before Linux 6.2 that is USO.
		logger.Printf("tap %s: offloads %v of %v: the kernel refused the rest, and does their work in software", req.TapName, got, tapdev.OffloadsFull)
	}
	if !req.Configure {
		return fd, nil
	}
	p := netconf.Params{Link: req.TapName, MTU: req.MTU}
	if req.Addr != "" {
		if p.Addr, err = netip.ParsePrefix(req.Addr); err == nil {
			p.Gateway, err = netip.ParseAddr(req.Gateway)
		}
	}
	if err == nil && req.MAC != "" {
		p.MAC, err = net.ParseMAC(req.MAC)
	}
	if err == nil && req.Prefix6 != "" {
		if p.Prefix6, err = netip.ParsePrefix(req.Prefix6); err == nil {
			p.Router6, err = netip.ParseAddr(req.Router6)
		}
		if err == nil && req.Addr6 != "" {
			p.Addr6, err = netip.ParsePrefix(req.Addr6)
		}
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

// childMain runs in a child nsgate re-executed inside a namespace, where
// nsexec.c put it before the Go runtime started. It opens the tap (and
// configures it, if asked) and hands it to the parent. The helper (spawn
// false) has then done its work; the spawned command's parent (spawn true),
// inside fresh user and network namespaces with the caller mapped to root,
// waits until nsgate serves the tap, so that the command finds a working
// network, and execs the command.
func childMain(spawn bool) int {
	conn, req, err := nsenter.HelperConn()
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer conn.Close()
	fd, err := openTap(req, spawn || req.Quiet)
	if err != nil {
		conn.SendError(err)
		return 1
	}
	fds := []int{fd}
	if req.ProcNet {
		for _, name := range nsenter.ProcNetFiles {
			// Opened in here, the files read this namespace's sockets
			// for as long as nsgate holds them. Without IPv6 there is no
			// tcp6: an empty file stands in.
			f, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				f, err = unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			}
			if err != nil {
				conn.SendError(fmt.Errorf("open %s in the namespace: %w", name, err))
				return 1
			}
			fds = append(fds, f)
		}
	}
	if err := conn.SendFDs(fds...); err != nil {
		logger.Print(err)
		return 1
	}
	for _, f := range fds {
		unix.Close(f)
	}
	if !spawn {
		return 0
	}
	if req.ResolvConf != "" {
		if err := privateResolvConf(req.ResolvConf); err != nil {
			logger.Printf("%v: %s uses the host's /etc/resolv.conf (DNS works if it names a non-loopback nameserver)", err, os.Args[1])
		}
	}
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
		// A mount namespace too: the command gets its own resolv.conf.
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// Unprivileged users may only map their gid with setgroups denied.
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  unix.SIGKILL,
	}
	req := request(cfg)
	req.ResolvConf = spawnResolvConf(cfg, "/etc/resolv.conf")
	conn, err := nsenter.StartHelper(cmd, nsenter.RoleSpawn, req)
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
	dev, err := tapDevice(fd)
	if err != nil {
		logger.Print(err)
		p.close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 1
	}
	status := make(chan int, 1)
	rc := serve(cfg, dev, nil, p, func(e *engine.Engine) {
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

// spawnResolvConf returns the resolv.conf of nsgate -- CMD: the DNS address
// (or --dns) as the nameserver, and with -6 the IPv6 one after it, with the search, domain and options lines
// of the host's file at path kept, as ip netns exec would show a file from
// /etc/netns/NAME/. The host's own nameservers are often on its loopback
// (systemd-resolved's 127.0.0.53, a local dnsmasq), which the command's
// network namespace cannot reach; the DNS address relays to them. It
// returns "" with --disable-dns and no --dns: the command then sees the
// host's file, as it does as pasta without --dns-forward.
func spawnResolvConf(cfg *config.Config, path string) string {
	ns := cfg.Net.DNS
	switch {
	case cfg.DNS.IsValid():
		ns = cfg.DNS
	case cfg.DisableDNS, !ns.IsValid(): // pasta mode without --dns-forward
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by nsgate for -- %s: nsgate's DNS address, and %s's search and options lines\nnameserver %s\n",
		cfg.Command[0], path, ns)
	if cfg.EnableIPv6 && !cfg.DNS.IsValid() {
		fmt.Fprintf(&b, "nameserver %s\n", cfg.Net6.DNS)
	}
	if host, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(host), "\n") {
			if f := strings.Fields(line); len(f) > 0 && (f[0] == "search" || f[0] == "domain" || f[0] == "options") {
				b.WriteString(strings.Join(f, " ") + "\n")
			}
		}
	}
	return b.String()
}

// privateResolvConf puts content at /etc/resolv.conf for the spawned
// command, in the child's own mount namespace (CLONE_NEWNS), the way ip
// netns exec puts /etc/netns/NAME/resolv.conf there: mounts are made private
// first, so nothing propagates to the host; the file is written on a
// scratch tmpfs, bind-mounted over /etc/resolv.conf (over its target, if it
// is a symlink such as systemd-resolved's), and the tmpfs is detached again,
// leaving only the bind mount. Nothing on the host changes.
func privateResolvConf(content string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("private resolv.conf: make mounts private: %w", err)
	}
	var scratch string
	var err error
	for _, dir := range []string{"/tmp", "/mnt", "/run"} {
		if err = unix.Mount("nsgate", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k,mode=0755"); err == nil {
			scratch = dir
			break
		}
	}
	if scratch == "" {
		return fmt.Errorf("private resolv.conf: mount a scratch tmpfs on /tmp, /mnt or /run: %w", err)
	}
	defer unix.Unmount(scratch, unix.MNT_DETACH)
	file := scratch + "/resolv.conf"
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		return fmt.Errorf("private resolv.conf: %w", err)
	}
	if err := unix.Mount(file, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("private resolv.conf: bind-mount over /etc/resolv.conf: %w", err)
	}
	return nil
}
