// Command nsgate gives a network namespace full network access through the
// host's ordinary sockets, with no privileges: it puts a tap device in the
// namespace and serves it from the host side. It accepts slirp4netns's
// command line, so rootlesskit and podman can run it in slirp4netns's place.
//
// Invoked as pasta, it answers to pasta's command line instead (pasta.go),
// for podman 5/6 and rootlesskit 2/3.
//
// The command is five programs in one binary, a file each: the command line
// (main.go); target mode, which serves an existing namespace (serve.go);
// VM mode, which serves a qemu guest over a unix socket (vm.go);
// the same continued inside the sandbox after a re-exec (sandbox.go); and
// the children nsgate re-executes inside a namespace to open its tap, the
// helper and the spawned command's parent (child.go).
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/kernel"
	"github.com/nsgate/nsgate/internal/nsenter"
	"github.com/nsgate/nsgate/internal/sandbox"
	"golang.org/x/sys/unix"
)

// version is nsgate's version: set here and nowhere else (the README and
// the Makefile do not repeat it). A var, not a const, so that a packager may
// still stamp a build with -ldflags "-X main.version=...".
var version = "0.5.0"

var logger = log.New(os.Stderr, "nsgate: ", 0)

func main() {
	switch nsenter.Role() {
	case nsenter.RoleNsenter:
		os.Exit(childMain(false))
	case nsenter.RoleSpawn:
		os.Exit(childMain(true))
	case sandbox.Role:
		os.Exit(sandboxedMain())
	}
	if invokedAsPasta() {
		os.Exit(runPasta(os.Args[1:]))
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
		logger.Printf("ready fd %d is not open: the caller must pass --ready-fd an open descriptor", cfg.ReadyFD)
		return 1
	}
	if cfg.SocketFD >= 0 && !claimFD(cfg.SocketFD) {
		logger.Printf("--fd %d is not open: pass the VM's connected socket", cfg.SocketFD)
		return 1
	}
	return start(cfg)
}

// start runs the mode cfg is in, once the command line (nsgate's or
// pasta's) has been checked.
func start(cfg *config.Config) int {
	// One clear error for a kernel below the floor, not failures later.
	if err := kernel.Check(); err != nil {
		logger.Print(err)
		return 1
	}
	if cfg.Spawn {
		return runSpawn(cfg)
	}
	if cfg.VM() {
		return runVM(cfg)
	}
	return runTarget(cfg)
}

// commit is the git commit nsgate was built from: stamped by make build
// (-ldflags -X main.commit=), else read from the Go build's VCS stamp, else
// "unknown".
var commit string

// slirpConfigVersionMax is what --version prints as SLIRP_CONFIG_VERSION_MAX:
// the libslirp configuration version whose features nsgate has. slirp4netns
// gates --outbound-addr on 2 and --disable-dns on 3, and Debian 12's
// slirp4netns 1.2.0 (libslirp 4.7.0) prints 4; nsgate has every option of
// that slirp4netns, so scripts that gate on the line treat it alike.
const slirpConfigVersionMax = 4

func printVersion() {
	c := commit
	if bi, ok := debug.ReadBuildInfo(); ok && c == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				c = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	// slirp4netns's layout: tools parse "version", "commit:" and
	// "SLIRP_CONFIG_VERSION_MAX:".
	fmt.Printf("nsgate version %s\ncommit: %s\nSLIRP_CONFIG_VERSION_MAX: %d\ngo: %s\n",
		version, c, slirpConfigVersionMax, runtime.Version())
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
