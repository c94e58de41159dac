package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/engine"
	"github.com/nsgate/nsgate/internal/pasta"
	"github.com/nsgate/nsgate/internal/publish"
	"golang.org/x/sys/unix"
)

// envPastaDaemon marks the re-executed pasta that serves in the background;
// its value is the ready fd its parent waits on.
const envPastaDaemon = "_NSGATE_PASTA_DAEMON"

// invokedAsPasta reports whether nsgate runs under the name pasta, as
// podman and rootlesskit start it; pasta itself picks its mode from
// argv[0] the same way.
func invokedAsPasta() bool { return filepath.Base(os.Args[0]) == "pasta" }

// runPasta is nsgate answering to pasta's command line (internal/pasta).
func runPasta(args []string) int {
	logger.SetPrefix("pasta: ")
	o, err := pasta.Parse(args)
	switch {
	case err != nil:
		logger.Print(err)
		return 1
	case o.Help:
		fmt.Print(pasta.Usage)
		return 0
	case o.Version:
		fmt.Printf("pasta (nsgate %s)\nnsgate answers to pasta's command line: https://passt.top is the original.\n", version)
		return 0
	}
	cfg, err := o.Config(pasta.HostUpstream)
	if err != nil {
		logger.Print(err)
		return 1
	}
	readyEnv := os.Getenv(envPastaDaemon)
	os.Unsetenv(envPastaDaemon)
	if cfg.Pasta.Daemon && readyEnv == "" {
		return daemonize()
	}
	if readyEnv != "" {
		if cfg.ReadyFD, err = strconv.Atoi(readyEnv); err != nil || cfg.ReadyFD < 3 || !claimFD(cfg.ReadyFD) {
			logger.Printf("%s=%q: not an open descriptor", envPastaDaemon, readyEnv)
			return 1
		}
	}
	return start(cfg)
}

// daemonize runs pasta again in a new session and waits until it serves
// the namespace: then this process exits 0, which podman and rootlesskit
// wait for. Errors before that reach the caller on this process's stderr,
// which the daemon shares until it is ready.
func daemonize() int {
	self, err := os.Executable()
	if err != nil {
		logger.Printf("find own executable: %v", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		logger.Printf("ready pipe: %v", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envPastaDaemon+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logger.Printf("start the background process: %v", err)
		return 1
	}
	w.Close()
	var b [1]byte
	n, _ := r.Read(b[:])
	if n == 1 {
		return 0 // it serves; it is not waited for
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	logger.Printf("the background process ended before the namespace was ready: %v", err)
	return 1
}

// pastaQuiet reports whether informational lines are to be left out
// (pasta's --quiet).
func pastaQuiet(cfg *config.Config) bool { return cfg.Pasta != nil && cfg.Pasta.Quiet }

// watchNetns returns an inotify descriptor on the directory of the
// --netns file, which watchName turns into an end of nsgate when that
// file goes: podman deletes it to tear down, and the tap fd would keep
// the namespace alive otherwise.
func watchNetns(path string) (stopFD, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return stopFD{}, fmt.Errorf("watch --netns %s: inotify_init1: %w", path, err)
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		return stopFD{}, fmt.Errorf("watch --netns %s: %w", path, err)
	}
	if _, err := os.Stat(path); err != nil { // gone before the watch began
		unix.Close(fd)
		return stopFD{}, fmt.Errorf("--netns %s: %w", path, err)
	}
	return stopFD{FD: fd, Reason: "namespace file " + path + " deleted", Name: filepath.Base(path)}, nil
}

// watchName waits on s, an inotify descriptor from watchNetns, and stops e
// when s.Name is deleted or the directory goes. It returns when done is
// closed too, which it checks every half second between its polls.
func watchName(e *engine.Engine, s stopFD, done <-chan struct{}) {
	buf := make([]byte, 4096)
	for {
		fds := []unix.PollFd{{Fd: int32(s.FD), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 500); err != nil && err != unix.EINTR {
			e.Stop(fmt.Sprintf("watch for %q: %v", s.Reason, err))
			return
		}
		select {
		case <-done:
			return
		default:
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(s.FD, buf)
		if err != nil {
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			e.Stop(fmt.Sprintf("watch for %q: %v", s.Reason, err))
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then the name.
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			end := off + unix.SizeofInotifyEvent + nameLen
			if end > n {
				break
			}
			name := string(trimNUL(buf[off+unix.SizeofInotifyEvent : end]))
			if mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0 || name == s.Name {
				e.Stop(s.Reason)
				return
			}
			off = end
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// followPorts is pasta's -t auto and -u auto: every autoScan it reads which
// ports the namespace has bound (procNet: the nsenter.ProcNetFiles, opened
// in the namespace) and opens or closes the host forwards to match. It
// returns when done is closed.
func followPorts(e *engine.Engine, cfg *config.Config, procNet []int, logf func(string, ...any), done <-chan struct{}) {
	type key struct {
		proto string
		port  uint16
	}
	open := map[key][]int{} // forward IDs
	failed := map[key]bool{}
	fwd := e.Forwarder()
	buf := make([]byte, 64<<10)
	scan := func() {
		want := map[key]bool{}
		for i, fd := range procNet {
			proto, on := "tcp", cfg.Pasta.AutoTCP
			if i >= 2 {
				proto, on = "udp", cfg.Pasta.AutoUDP
			}
			if !on {
				continue
			}
			var data []byte
			data, buf = readProcNet(fd, buf)
			ports := map[uint16]bool{}
			pasta.BoundPorts(data, proto == "udp", ports)
			for p := range ports {
				want[key{proto, p}] = true
			}
		}
		for k, ids := range open {
			if !want[k] {
				for _, id := range ids {
					_ = fwd.Remove(id)
				}
				delete(open, k)
			}
		}
		for k := range failed {
			if !want[k] {
				delete(failed, k) // a later bind is tried again
			}
		}
		for k := range want {
			if open[k] != nil || failed[k] {
				continue
			}
			if len(open) >= maxAutoPorts {
				logf("-t/-u auto: the namespace binds more than %d ports: port %d/%s and further ones are not forwarded", maxAutoPorts, k.port, k.proto)
				failed[k] = true
				continue
			}
			var ids []int
			for _, host := range autoHosts(cfg) {
				id, err := fwd.Add(publish.Rule{Proto: k.proto, HostAddr: host, HostPort: k.port, GuestPort: k.port})
				if err != nil {
					if errors.Is(err, engine.ErrStopped) {
						return
					}
					logf("-%c auto: port %d bound in the namespace: %v", k.proto[0], k.port, err)
					failed[k] = true
					continue
				}
				ids = append(ids, id)
			}
			if len(ids) > 0 {
				open[k] = ids
			}
		}
	}
	t := time.NewTicker(autoScan)
	defer t.Stop()
	for {
		scan()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// autoScan is how often -t auto looks at the namespace's ports: twice
// pasta's rate, so that a server is reachable within a second of binding.
const autoScan = 500 * time.Millisecond

// maxAutoPorts bounds the ports -t auto and -u auto forward together: each
// holds a host socket per family, and the namespace, which decides how many
// ports it binds, is not trusted with nsgate's descriptors.
const maxAutoPorts = 1024

// autoHosts are the host addresses an automatic forward binds: every
// address of each family served.
func autoHosts(cfg *config.Config) []netip.Addr {
	var hosts []netip.Addr
	if !cfg.Pasta.NoIPv4 {
		hosts = append(hosts, netip.IPv4Unspecified())
	}
	if cfg.EnableIPv6 {
		hosts = append(hosts, netip.IPv6Unspecified())
	}
	return hosts
}

// maxProcNet bounds what is read of one /proc/net file: the namespace is
// not trusted to keep its socket count small.
const maxProcNet = 16 << 20

// readProcNet reads fd from offset 0 to its end into buf, growing it up to
// maxProcNet, and returns the data and the buffer for the next read.
func readProcNet(fd int, buf []byte) ([]byte, []byte) {
	n := 0
	for {
		if n == len(buf) {
			if len(buf) >= maxProcNet {
				return buf[:n], buf
			}
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			return buf[:n], buf
		}
		n += m
	}
}

// pastaServing starts what pasta mode runs beside the loop: the watch on
// the --netns file and the port follower. The returned function stops them
// and waits, before the descriptors they use are closed.
func pastaServing(e *engine.Engine, cfg *config.Config, stops []stopFD, p *prepared, logf func(string, ...any)) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range stops {
		if s.Name != "" {
			wg.Add(1)
			go func() { defer wg.Done(); watchName(e, s, done) }()
		}
	}
	if cfg.Pasta != nil && len(p.procNet) == 4 {
		wg.Add(1)
		go func() { defer wg.Done(); followPorts(e, cfg, p.procNet, logf, done) }()
	}
	return func() { close(done); wg.Wait() }
}
