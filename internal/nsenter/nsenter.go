// Package nsenter opens the tap inside a target network namespace without the
// main process ever leaving the host's namespaces.
//
// nsgate re-executes itself as a short-lived helper. A C constructor
// (nsexec.c) joins the target's user and network namespaces before the Go
// runtime starts, while the process is single-threaded; the Go half of the
// helper then opens (and optionally configures) the tap and passes its file
// descriptor back over a socketpair with SCM_RIGHTS. Spawn mode uses the same
// message framing from a child created in fresh namespaces.
package nsenter

// #cgo CFLAGS: -Wall -Wextra -Werror -O2
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// Environment variables of the helper protocol. nsexec.c reads the first four.
const (
	envRole    = "_NSGATE_ROLE"
	envSock    = "_NSGATE_SOCK"
	envUserns  = "_NSGATE_USERNS"
	envNetns   = "_NSGATE_NETNS"
	envRequest = "_NSGATE_REQUEST"
)

// Roles a re-executed nsgate can play.
const (
	RoleNsenter = "nsenter" // joined the target namespaces in nsexec.c
	RoleSpawn   = "spawn"   // created in fresh namespaces for -- CMD
)

// Request says what the helper does once inside the namespace.
type Request struct {
	TapName   string `json:"tap"`
	Configure bool   `json:"configure,omitempty"`
	MTU       int    `json:"mtu"`
	Addr      string `json:"addr,omitempty"`    // address/prefix for --configure; "": no IPv4
	Gateway   string `json:"gateway,omitempty"` // default route for --configure
	MAC       string `json:"mac,omitempty"`     // --macaddress
	Prefix6   string `json:"prefix6,omitempty"` // -c -6: the /64 the address comes from
	Router6   string `json:"router6,omitempty"` // -c -6: the IPv6 default route
	Addr6     string `json:"addr6,omitempty"`   // pasta: the IPv6 address/prefix, in place of the EUI-64 one
	// ProcNet asks the helper for the namespace's /proc/net/{tcp,tcp6,
	// udp,udp6}, opened in there (pasta's -t auto, -u auto reads them).
	ProcNet bool `json:"procnet,omitempty"`
	// Quiet keeps informational lines off standard error (pasta's -q).
	Quiet bool `json:"quiet,omitempty"`
	// ResolvConf, if set, is the spawned command's /etc/resolv.conf (spawn
	// mode only; the child mounts it in its own mount namespace).
	ResolvConf string `json:"resolv,omitempty"`
}

// Role returns the helper role this process was started in, or "".
func Role() string { return os.Getenv(envRole) }

// OpenTap starts the helper, which joins usernsPath (if not empty, and not
// already ours) and netnsPath and acts on req there, and returns the tap fd,
// followed by the ProcNetFiles if req.ProcNet.
func OpenTap(netnsPath, usernsPath string, req Request) ([]int, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable to re-run as helper: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Args = []string{"nsgate-nsenter"}
	conn, err := StartHelper(cmd, RoleNsenter, req,
		envNetns+"="+netnsPath, envUserns+"="+usernsPath)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	want := 1
	if req.ProcNet {
		want += len(ProcNetFiles)
	}
	fds, rerr := conn.RecvFDs(want)
	werr := cmd.Wait()
	if rerr != nil {
		return nil, rerr
	}
	if werr != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("nsenter helper: %w", werr)
	}
	return fds, nil
}

// StartHelper starts cmd (a re-execution of nsgate) in role, with req in its
// environment and the child end of a new socketpair as fd 3, and returns the
// parent end. The caller waits for cmd.
func StartHelper(cmd *exec.Cmd, role string, req Request, env ...string) (*Conn, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair for helper: %w", err)
	}
	child := os.NewFile(uintptr(pair[1]), "helper-socket")
	defer child.Close()
	js, err := json.Marshal(req)
	if err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("encode helper request: %w", err)
	}
	cmd.ExtraFiles = []*os.File{child} // fd 3 in the child
	cmd.Env = append(os.Environ(), envRole+"="+role, envSock+"=3", envRequest+"="+string(js))
	cmd.Env = append(cmd.Env, env...)
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("start %s helper: %w", role, err)
	}
	return &Conn{fd: pair[0]}, nil
}

// HelperConn returns the helper's end of the socket and its request, and
// clears the protocol's environment variables so that nothing the helper
// starts inherits them.
func HelperConn() (*Conn, Request, error) {
	var req Request
	sock, js := os.Getenv(envSock), os.Getenv(envRequest)
	for _, k := range []string{envRole, envSock, envUserns, envNetns, envRequest} {
		os.Unsetenv(k)
	}
	fd, err := strconv.Atoi(sock)
	if err != nil || fd < 3 {
		return nil, req, fmt.Errorf("helper socket %q: not a file descriptor", sock)
	}
	unix.CloseOnExec(fd)
	if err := json.Unmarshal([]byte(js), &req); err != nil {
		return nil, req, fmt.Errorf("helper request: %w", err)
	}
	return &Conn{fd: fd}, req, nil
}

// Conn is one end of the helper socket (SOCK_SEQPACKET: one message per
// send, so a message is either an fd or an error, never half of one).
type Conn struct {
	fd int
}

// Close closes the socket. Closing again does nothing: a deferred Close
// after an explicit one must not close a descriptor that reused the number.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	fd := c.fd
	c.fd = -1
	return unix.Close(fd)
}

// SendFD sends fd with the tag "K".
func (c *Conn) SendFD(fd int) error { return c.SendFDs(fd) }

// SendFDs sends the tap fd and what else the request asked for (the
// ProcNet files) in one message, tagged "K".
func (c *Conn) SendFDs(fds ...int) error {
	if err := unix.Sendmsg(c.fd, []byte("K"), unix.UnixRights(fds...), nil, 0); err != nil {
		return fmt.Errorf("send tap fd %d to nsgate: %w", fds[0], err)
	}
	return nil
}

// SendError reports err to the parent, which prints it.
func (c *Conn) SendError(err error) {
	_ = unix.Sendmsg(c.fd, []byte("E"+err.Error()), nil, nil, 0)
}

// Send sends a one-byte signal such as spawn mode's "go ahead".
func (c *Conn) Send(b byte) error {
	_, err := unix.Write(c.fd, []byte{b})
	return err
}

// Recv waits for a one-byte signal; it returns an error if the peer closed.
func (c *Conn) Recv() (byte, error) {
	var b [1]byte
	n, err := unix.Read(c.fd, b[:])
	if err != nil {
		return 0, err
	}
	if n != 1 {
		return 0, errors.New("peer closed the helper socket")
	}
	return b[0], nil
}

// RecvFD receives a file descriptor, or the helper's error message.
func (c *Conn) RecvFD() (int, error) {
	fds, err := c.RecvFDs(1)
	if err != nil {
		return -1, err
	}
	return fds[0], nil
}

// RecvFDs receives want file descriptors in one message, or the helper's
// error message.
func (c *Conn) RecvFDs(want int) ([]int, error) {
	buf := make([]byte, 1024)
	oob := make([]byte, unix.CmsgSpace(4*want))
	n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive tap fd from helper: %w", err)
	}
	if n == 0 {
		return nil, errors.New("the helper exited without sending the tap fd (its own error, if any, is on the line above)")
	}
	if buf[0] == 'E' {
		return nil, errors.New(string(buf[1:n]))
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("helper message without a file descriptor (%d control messages): %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != want {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("helper sent %d file descriptors, want %d: %v", len(fds), want, err)
	}
	return fds, nil
}

// ProcNetFiles are the files a ProcNet request adds after the tap fd, in
// this order.
var ProcNetFiles = []string{"/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"}
