package main

import (
	"encoding/json"
	"os"

	"github.com/nsgate/nsgate/internal/api"
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/sandbox"
	"golang.org/x/sys/unix"
)

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
