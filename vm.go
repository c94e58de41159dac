package main

import (
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/vmsock"
)

// runVM serves a VM over a unix stream socket: nsgate --socket PATH, or
// --fd N. No namespace is joined and no tap opened; the engine is the same.
func runVM(cfg *config.Config) int {
	var port *vmsock.Port
	var err error
	if cfg.Socket != "" {
		port, err = vmsock.Listen(cfg.Socket)
	} else {
		port, err = vmsock.FromConn(cfg.SocketFD)
	}
	if err != nil {
		logger.Print(err)
		return 1
	}
	p, err := prepare(cfg)
	if err != nil {
		port.Close()
		logger.Print(err)
		return 1
	}
	if cfg.EnableSandbox {
		return execSandbox(cfg, -1, port, nil, p)
	}
	return serve(cfg, port, nil, p, nil)
}
