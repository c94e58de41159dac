package main

import (
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/vmsock"
)

// runVM serves a VM over a unix stream socket: nsgate --socket PATH, or
// --fd N. No namespace is joined and no tap opened; the engine is the same.
//
// The forwards, the API socket and the --pid-file come first, the VM's
// socket last: whoever waits for the socket to appear (libvirt, qemu's
// launcher, a test) then finds the PID file already written.
func runVM(cfg *config.Config) int {
	p, err := prepare(cfg)
	if err != nil {
		logger.Print(err)
		return 1
	}
	var port *vmsock.Port
	if cfg.Socket != "" {
		port, err = vmsock.Listen(cfg.Socket)
	} else {
		port, err = vmsock.FromConn(cfg.SocketFD)
	}
	if err != nil {
		p.close()
		logger.Print(err)
		return 1
	}
	if cfg.EnableSandbox {
		return execSandbox(cfg, -1, port, nil, p)
	}
	return serve(cfg, port, nil, p, nil)
}
