package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/nsgate/nsgate/internal/api"
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/fileref"
	"github.com/nsgate/nsgate/internal/sandbox"
	"github.com/nsgate/nsgate/internal/vmsock"
	"golang.org/x/sys/unix"
)

// handoff is what nsgate passes to itself across the exec into the
// sandbox (environment variable _NSGATE_HANDOFF): the parsed command line,
// which could not be checked again in there, and its open descriptors.
type handoff struct {
	Config  *config.Config
	Tap     int             // -1 in VM mode
	VM      *vmsock.Handoff // nil in namespace mode
	Stops   []stopFD
	Fwd     []int
	API     int // -1: none
	APIFile fileref.Ref
	PIDFile fileref.Ref
	Pcap    int // --pcap's file; -1: none
	ProcNet []int
	Detach  int // -1: none
}

const envHandoff = "_NSGATE_HANDOFF"

// execSandbox re-executes nsgate into the sandbox (see internal/sandbox),
// to serve the tap fd, or the VM's port vm. It returns only on failure.
func execSandbox(cfg *config.Config, tap int, vm *vmsock.Port, stops []stopFD, p *prepared) int {
	h := handoff{Config: cfg, Tap: tap, Stops: stops, Fwd: p.fwdFDs, API: -1, Pcap: -1, Detach: -1, ProcNet: p.procNet,
		APIFile: fileref.Ref{Dir: -1}, PIDFile: fileref.Ref{Dir: -1}}
	fail := func(err error) int {
		logger.Print(err)
		p.close()
		if vm != nil {
			vm.Close()
		}
		return 1
	}
	keep := append([]int{}, p.fwdFDs...)
	if tap >= 0 {
		keep = append(keep, tap)
	}
	if vm != nil {
		vh, err := vm.Handoff()
		if err != nil {
			return fail(err)
		}
		h.VM = &vh
		for _, fd := range []int{vh.Listen, vh.Conn, vh.File.Dir} {
			if fd >= 0 {
				keep = append(keep, fd)
			}
		}
	}
	if p.pidFile.Path != "" {
		r, err := fileref.Open(p.pidFile.Path)
		if err != nil {
			return fail(fmt.Errorf("--pid-file: %w", err))
		}
		h.PIDFile = r
		keep = append(keep, r.Dir)
	}
	if p.pcap != nil {
		h.Pcap = int(p.pcap.Fd())
		keep = append(keep, h.Pcap)
	}
	for _, s := range stops {
		keep = append(keep, s.FD)
	}
	keep = append(keep, p.procNet...)
	if p.detach != nil {
		h.Detach = int(p.detach.Fd())
		keep = append(keep, h.Detach)
	}
	for _, fd := range []int{cfg.ExitFD, cfg.ReadyFD} {
		if fd >= 0 {
			keep = append(keep, fd)
		}
	}
	if p.api != nil {
		var err error
		if h.API, h.APIFile, err = p.api.Handoff(); err != nil {
			return fail(err)
		}
		keep = append(keep, h.API, h.APIFile.Dir)
	}
	js, err := json.Marshal(h)
	if err == nil {
		err = sandbox.Exec(keep, append(os.Environ(), envHandoff+"="+string(js)))
	}
	return fail(err)
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
	if cfg.Pasta != nil {
		logger.SetPrefix("pasta: ")
	}
	for _, fd := range append(append(append([]int{h.Tap, h.APIFile.Dir, h.PIDFile.Dir, h.Pcap, h.Detach}, h.Fwd...), h.ProcNet...), cfg.ExitFD, cfg.ReadyFD) {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	for _, s := range h.Stops {
		unix.CloseOnExec(s.FD)
	}
	p := &prepared{fwdFDs: h.Fwd, pidFile: h.PIDFile, procNet: h.ProcNet}
	if h.Detach >= 0 {
		p.detach = os.NewFile(uintptr(h.Detach), "detach")
	}
	if h.Pcap >= 0 {
		p.pcap = os.NewFile(uintptr(h.Pcap), cfg.Pcap)
	}
	if h.API >= 0 {
		if p.api, err = api.FromFD(cfg.APISocket, h.API, h.APIFile); err != nil {
			logger.Print(err)
			return 1
		}
	}
	var dev frameDevice
	if h.VM != nil {
		dev = vmsock.FromHandoff(*h.VM)
	} else if dev, err = tapDevice(h.Tap); err != nil {
		logger.Print(err)
		return 1
	}
	return serve(cfg, dev, h.Stops, p, nil)
}
