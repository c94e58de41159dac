//go:build integration

package main

// Test helpers that run inside the test's namespaces: the test binary
// re-executes itself (NSGATE_TEST_HELPER) as a TCP client or server there.
// Both ends are real kernel TCP stacks; the helpers only move bytes and check
// them.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const helperEnv = "NSGATE_TEST_HELPER"

// stream is a fast deterministic byte source.
type stream struct{ r *rand.ChaCha8 }

func newStream(seed byte) *stream {
	var s [32]byte
	s[0] = seed
	return &stream{rand.NewChaCha8(s)}
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// sendN writes n bytes from a stream to w and returns their sha256.
func sendN(w io.Writer, n int64, seed byte) (string, error) {
	h := sha256.New()
	_, err := io.CopyN(io.MultiWriter(w, h), newStream(seed), n)
	return hex.EncodeToString(h.Sum(nil)), err
}

// recvAll reads r to EOF and returns the count and sha256.
func recvAll(r io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// dialTCP connects to addr within 10 s, with TCP_MAXSEG set to mss first
// unless it is 0.
func dialTCP(addr string, mss int) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if mss > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss) })
			return serr
		}
	}
	return d.Dial("tcp", addr)
}

func listen(addr string) net.Listener {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	return l
}

// runHelper is the helper's main; it prints its result on stdout.
func runHelper(args []string) int {
	fail := func(err error) int { fmt.Println("error", err); return 1 }
	switch args[0] {
	case "spawnsuite": // spawnsuite N: see spawnSuite
		n, _ := strconv.ParseInt(args[1], 10, 64)
		return spawnSuite(n)
	case "spewmany": // spewmany LISTEN N: send N bytes on every connection, keep each open
		l := listen(args[1])
		n, _ := strconv.Atoi(args[2])
		buf := make([]byte, n)
		for {
			c, err := l.Accept()
			if err != nil {
				return fail(err)
			}
			go func() {
				c.Write(buf)
				select {} // hold c: a collected conn is closed by its finalizer
			}()
		}
	case "holdmany": // holdmany ADDR CONNS SECONDS: open CONNS connections, read nothing, hold them
		conns, _ := strconv.Atoi(args[2])
		secs, _ := strconv.Atoi(args[3])
		held := make([]net.Conn, 0, conns)
		// The buffer is set before connecting, so that the window scale
		// offered in the SYN lets the window reach it.
		d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1<<20) })
		}}
		for i := 0; i < conns; i++ {
			c, err := d.Dial("tcp", args[1])
			if err != nil {
				return fail(fmt.Errorf("connection %d: %w", i, err))
			}
			held = append(held, c)
		}
		fmt.Println("ready")
		time.Sleep(time.Duration(secs) * time.Second)
		fmt.Println("held", len(held))
	case "holdlisten": // holdlisten LISTEN BACKLOG: listen, never accept (connects stall once the backlog is full)
		backlog, _ := strconv.Atoi(args[2])
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			return fail(err)
		}
		ap, err := netip.ParseAddrPort(args[1])
		if err != nil {
			return fail(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
			return fail(err)
		}
		if err := syscall.Listen(fd, backlog); err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		select {}
	case "udplimit": // udplimit ADDR FLOWS: FLOWS sockets one after another, one echo each; count the outcomes
		flows, _ := strconv.Atoi(args[2])
		// As many as the descriptor limit allows (the hard limit may be
		// below FLOWS: the report says how many were made).
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && int(lim.Max) < flows+64 {
			flows = int(lim.Max) - 64
		}
		outcomes := map[string]int{}
		held := make([]net.Conn, flows) // every flow stays open to the end
		buf := make([]byte, 64)
		for i := 0; i < flows; i++ {
			c, err := net.Dial("udp", args[1])
			if err != nil {
				return fail(fmt.Errorf("flow %d: %w", i, err))
			}
			held[i] = c
			c.SetDeadline(time.Now().Add(3 * time.Second))
			msg := fmt.Sprintf("flow %d", i)
			_, err = c.Write([]byte(msg))
			if err == nil {
				var n int
				n, err = c.Read(buf)
				if err == nil && string(buf[:n]) != msg {
					err = fmt.Errorf("flow %d: echo %q", i, buf[:n])
				}
			}
			outcomes[errName(err)]++
		}
		for _, c := range held {
			c.Close()
		}
		fmt.Println("connected", outcomes["connected"], "refused", outcomes["refused"], "other", flows-outcomes["connected"]-outcomes["refused"], "flows", flows)
	case "sink": // sink LISTEN: receive one connection to EOF
		c, err := listen(args[1]).Accept()
		if err != nil {
			return fail(err)
		}
		n, sum, err := recvAll(c)
		if err != nil {
			return fail(err)
		}
		fmt.Println(n, sum)
	case "source": // source LISTEN N: send N bytes to one connection
		c, err := listen(args[1]).Accept()
		if err != nil {
			return fail(err)
		}
		n, _ := strconv.ParseInt(args[2], 10, 64)
		sum, err := sendN(c, n, 2)
		if err != nil {
			return fail(err)
		}
		c.Close()
		fmt.Println(n, sum)
	case "send", "sendmss": // send ADDR N; sendmss ADDR N MSS: with TCP_MAXSEG set
		mss := 0
		if args[0] == "sendmss" {
			mss, _ = strconv.Atoi(args[3])
		}
		c, err := dialTCP(args[1], mss)
		if err != nil {
			return fail(err)
		}
		n, _ := strconv.ParseInt(args[2], 10, 64)
		sum, err := sendN(c, n, 1)
		if err != nil {
			return fail(err)
		}
		c.Close()
		fmt.Println(n, sum)
	case "usosend": // usosend ADDR SEG COUNT: COUNT datagrams of SEG bytes in one UDP_SEGMENT write
		seg, _ := strconv.Atoi(args[2])
		count, _ := strconv.Atoi(args[3])
		c, err := net.Dial("udp", args[1])
		if err != nil {
			return fail(err)
		}
		rc, _ := c.(*net.UDPConn).SyscallConn()
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_UDP, unix.UDP_SEGMENT, seg) })
		if serr != nil {
			return fail(fmt.Errorf("UDP_SEGMENT: %w", serr))
		}
		buf := make([]byte, seg*count)
		for i := range buf {
			buf[i] = byte(i / seg) // each datagram says which it is
		}
		if _, err := c.Write(buf); err != nil {
			return fail(err)
		}
		fmt.Println("sent", count)
	case "udpcount": // udpcount LISTEN SEG COUNT: receive COUNT datagrams of SEG bytes, datagram i all bytes i
		seg, _ := strconv.Atoi(args[2])
		count, _ := strconv.Atoi(args[3])
		pc, err := net.ListenPacket("udp", args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		buf := make([]byte, 65536)
		seen := make([]bool, count)
		pc.SetReadDeadline(time.Now().Add(20 * time.Second))
		for got := 0; got < count; got++ {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return fail(fmt.Errorf("after %d datagrams: %w", got, err))
			}
			i := int(buf[0])
			if n != seg || i >= count || seen[i] || !bytes.Equal(buf[:n], bytes.Repeat(buf[:1], n)) {
				return fail(fmt.Errorf("datagram %d: %d bytes, first %d, want %d bytes of one new index", got, n, i, seg))
			}
			seen[i] = true
		}
		fmt.Println("ok", count)
	case "recv", "recvmss": // recv ADDR; recvmss ADDR MSS: with TCP_MAXSEG set
		mss := 0
		if args[0] == "recvmss" {
			mss, _ = strconv.Atoi(args[2])
		}
		c, err := dialTCP(args[1], mss)
		if err != nil {
			return fail(err)
		}
		n, sum, err := recvAll(c)
		if err != nil {
			return fail(err)
		}
		fmt.Println(n, sum)
	case "echo": // echo LISTEN: echo every connection until EOF
		l := listen(args[1])
		for {
			c, err := l.Accept()
			if err != nil {
				return fail(err)
			}
			go func() {
				io.Copy(c, c)
				c.Close()
			}()
		}
	case "many": // many ADDR CONNS BYTES: concurrent echo round trips
		conns, _ := strconv.Atoi(args[2])
		size, _ := strconv.Atoi(args[3])
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		open := make([]net.Conn, conns)
		for i := range open { // all open at once before any data moves
			c, err := net.DialTimeout("tcp", args[1], 20*time.Second)
			if err != nil {
				return fail(fmt.Errorf("connection %d: %w", i, err))
			}
			open[i] = c
		}
		for i, c := range open {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				want := make([]byte, size)
				newStream(byte(i)).Read(want)
				go c.Write(want)
				got := make([]byte, size)
				c.SetReadDeadline(time.Now().Add(60 * time.Second))
				if _, err := io.ReadFull(c, got); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				if string(got) != string(want) {
					errs <- fmt.Errorf("connection %d: echoed bytes differ", i)
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fail(err)
		}
		fmt.Println("ok", conns)
	case "dial": // dial ADDR: report how connecting ends
		start := time.Now()
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err == nil {
			c.Close()
		}
		fmt.Println(errName(err), time.Since(start).Milliseconds())
	case "dialmany": // dialmany ADDR N: N connections at once, each given 1 s; print how many connected
		n, _ := strconv.Atoi(args[2])
		var ok atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, err := net.DialTimeout("tcp", args[1], time.Second); err == nil {
					ok.Add(1)
					c.Close()
				}
			}()
		}
		wg.Wait()
		fmt.Println("connected", ok.Load(), "of", n)
	case "rstserver": // rstserver LISTEN: accept, read 1 MiB, reset
		c, err := listen(args[1]).Accept()
		if err != nil {
			return fail(err)
		}
		io.CopyN(io.Discard, c, 1<<20)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		fmt.Println("reset")
	case "expectreset": // expectreset ADDR: write until the connection fails
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			return fail(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 64<<10)
		for {
			if _, err = c.Write(buf); err != nil {
				break
			}
		}
		fmt.Println(errName(err))
	case "shaserver": // shaserver LISTEN: read to EOF, answer with the sha256
		c, err := listen(args[1]).Accept()
		if err != nil {
			return fail(err)
		}
		n, sum, err := recvAll(c)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(c, "%d %s\n", n, sum)
		c.Close()
		fmt.Println(n, sum)
	case "halfclose": // halfclose ADDR N: send, shut down writing, read the answer
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			return fail(err)
		}
		n, _ := strconv.ParseInt(args[2], 10, 64)
		sum, err := sendN(c, n, 3)
		if err != nil {
			return fail(err)
		}
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		answer, err := io.ReadAll(c)
		if err != nil {
			return fail(err)
		}
		if want := fmt.Sprintf("%d %s\n", n, sum); string(answer) != want {
			return fail(fmt.Errorf("answer %q, want %q", answer, want))
		}
		fmt.Println("ok")
	case "blast", "spew": // blast ADDR N / spew LISTEN N: send N bytes of one buffer, unhashed (benchmarks)
		var c net.Conn
		var err error
		if args[0] == "blast" {
			c, err = net.DialTimeout("tcp", args[1], 10*time.Second)
		} else {
			c, err = listen(args[1]).Accept()
		}
		if err != nil {
			return fail(err)
		}
		n, _ := strconv.ParseInt(args[2], 10, 64)
		buf := make([]byte, 1<<20)
		for left := n; left > 0; left -= int64(len(buf)) {
			if _, err := c.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				return fail(err)
			}
		}
		c.Close()
		fmt.Println(n)
	case "drain", "suck": // drain LISTEN / suck ADDR: read to EOF, count only (benchmarks)
		var c net.Conn
		var err error
		if args[0] == "drain" {
			c, err = listen(args[1]).Accept()
		} else {
			c, err = net.DialTimeout("tcp", args[1], 10*time.Second)
		}
		if err != nil {
			return fail(err)
		}
		n, err := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
		if err != nil {
			return fail(err)
		}
		fmt.Println(n)
	case "httpget": // httpget URL: print the body of a GET
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(args[1])
		if err != nil {
			return fail(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%d %s", resp.StatusCode, body)
	case "peer": // peer LISTEN: accept one connection, print the client's address
		c, err := listen(args[1]).Accept()
		if err != nil {
			return fail(err)
		}
		c.Close()
		fmt.Println(c.RemoteAddr().(*net.TCPAddr).IP)
	case "udppeer": // udppeer LISTEN: echo one datagram, print its source address
		pc, err := net.ListenPacket("udp", args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		buf := make([]byte, 65536)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fail(err)
		}
		pc.WriteTo(buf[:n], from)
		fmt.Println(from.(*net.UDPAddr).IP)
	case "readreset": // readreset ADDR: connect, read until the connection ends
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			fmt.Println(errName(err))
			return 0
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = c.Read(make([]byte, 1))
		fmt.Println(errName(err))
	case "udpecho": // udpecho LISTEN: echo datagrams
		pc, err := net.ListenPacket("udp", args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return fail(err)
			}
			pc.WriteTo(buf[:n], from)
		}
	case "udpflows": // udpflows ADDR FLOWS COUNT SIZE: FLOWS sockets at once, COUNT checked echoes each
		flows, _ := strconv.Atoi(args[2])
		count, _ := strconv.Atoi(args[3])
		size, _ := strconv.Atoi(args[4])
		errs := make(chan error, flows)
		var wg sync.WaitGroup
		for i := 0; i < flows; i++ {
			c, err := net.Dial("udp", args[1])
			if err != nil {
				return fail(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				errs <- udpExchange(c, i, count, size)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return fail(err)
			}
		}
		fmt.Println("ok", flows*count)
	case "udppmtu": // udppmtu ADDR SIZE: send SIZE-byte datagrams, unfragmented, until a Packet Too Big lowers the path MTU; print it
		c, err := net.Dial("udp", args[1])
		if err != nil {
			return fail(err)
		}
		size, _ := strconv.Atoi(args[2])
		rc, err := c.(*net.UDPConn).SyscallConn()
		if err != nil {
			return fail(err)
		}
		rc.Control(func(fd uintptr) {
			recvErr(int(fd), true)
			syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, syscall.IPV6_MTU_DISCOVER, syscall.IPV6_PMTUDISC_DO)
		})
		pathMTU := func() (mtu int) {
			rc.Control(func(fd uintptr) { mtu, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_IPV6, syscall.IPV6_MTU) })
			return mtu
		}
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			_, err := c.Write(make([]byte, size))
			if err == nil {
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				_, err = c.Read(make([]byte, 10))
			}
			if errors.Is(err, syscall.EMSGSIZE) {
				fmt.Println("mtu", pathMTU())
				return 0
			}
		}
		fmt.Println("no Packet Too Big; path MTU", pathMTU())
	case "udprefused": // udprefused ADDR: send, report the ICMP error that comes back
		c, err := net.Dial("udp", args[1])
		if err != nil {
			return fail(err)
		}
		// IP_RECVERR (IPV6_RECVERR), as ping and traceroute set it: without it Linux
		// reports only hard errors (port unreachable) on a UDP socket, not
		// network unreachable.
		if rc, err := c.(*net.UDPConn).SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { recvErr(int(fd), c.RemoteAddr().(*net.UDPAddr).IP.To4() == nil) })
		}
		start := time.Now()
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 10))
		fmt.Println(errName(err), time.Since(start).Milliseconds())
	case "rr": // rr ADDR N: N one-byte round trips on one connection
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			return fail(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		n, _ := strconv.Atoi(args[2])
		b := []byte{1}
		for i := 0; i < n; i++ {
			if _, err := c.Write(b); err != nil {
				return fail(err)
			}
			if _, err := io.ReadFull(c, b); err != nil {
				return fail(err)
			}
		}
		fmt.Println("ok")
	case "crr": // crr ADDR N: N connections, each one round trip
		n, _ := strconv.Atoi(args[2])
		b := []byte{1}
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
			if err != nil {
				return fail(err)
			}
			if _, err := c.Write(b); err != nil {
				return fail(err)
			}
			if _, err := io.ReadFull(c, b); err != nil {
				return fail(err)
			}
			c.Close()
		}
		fmt.Println("ok")
	default:
		return fail(fmt.Errorf("unknown helper %q", args[0]))
	}
	return 0
}

// udpExchange sends count datagrams of size bytes on c, each numbered and
// filled from a stream, and checks that each comes back intact; a datagram
// lost on the way is sent again (UDP may drop), up to 20 times.
func udpExchange(c net.Conn, flow, count, size int) error {
	out := make([]byte, size)
	in := make([]byte, size+1)
	src := newStream(byte(flow))
	for i := 0; i < count; i++ {
		src.Read(out)
		binary.BigEndian.PutUint32(out, uint32(i))
		ok := false
		for try := 0; try < 20 && !ok; try++ {
			if _, err := c.Write(out); err != nil {
				return fmt.Errorf("flow %d datagram %d: %w", flow, i, err)
			}
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, err := c.Read(in)
				if err != nil {
					break // timeout: send again
				}
				if n == size && binary.BigEndian.Uint32(in) == uint32(i) {
					if !bytes.Equal(in[:n], out) {
						return fmt.Errorf("flow %d datagram %d: payload differs", flow, i)
					}
					ok = true
					break
				}
			}
		}
		if !ok {
			return fmt.Errorf("flow %d datagram %d: no echo after 20 tries", flow, i)
		}
	}
	return nil
}

// recvErr asks a UDP socket for ICMP errors beyond the hard ones
// (IP_RECVERR, or IPV6_RECVERR when six), as ping and traceroute do.
func recvErr(fd int, six bool) {
	if six {
		syscall.SetsockoptInt(fd, syscall.SOL_IPV6, syscall.IPV6_RECVERR, 1)
	} else {
		syscall.SetsockoptInt(fd, syscall.SOL_IP, syscall.IP_RECVERR, 1)
	}
}

func errName(err error) string {
	switch {
	case err == nil:
		return "connected"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "netunreachable"
	case errors.Is(err, syscall.EACCES): // ICMPv6 administratively prohibited
		return "prohibited"
	}
	return "error:" + err.Error()
}

// helper prepares the test binary as a helper under prefix (a namespace
// entering command such as nsenter -t PID -n).
func helper(prefix *exec.Cmd, args ...string) *exec.Cmd {
	argv := append(prefix.Args[1:], os.Args[0])
	cmd := exec.Command(prefix.Args[0], argv...)
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

// server is a running helper server.
type server struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

// startServer starts a helper server and waits until it listens.
func startServer(t testing.TB, prefix *exec.Cmd, args ...string) *server {
	t.Helper()
	cmd := helper(prefix, args...)
	cmd.Stderr = os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, out: bufio.NewReader(pipe)}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	line, err := s.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("server %v: %q %v", args, line, err)
	}
	return s
}

// result waits for the server's result line.
func (s *server) result(t testing.TB, timeout time.Duration) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		line, _ := s.out.ReadString('\n')
		done <- strings.TrimSpace(line)
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(timeout):
		t.Fatalf("server gave no result within %v", timeout)
		return ""
	}
}

// runClient runs a helper client to completion and returns its result line.
func runClient(t testing.TB, timeout time.Duration, prefix *exec.Cmd, args ...string) string {
	t.Helper()
	cmd := helper(prefix, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("client %v did not finish within %v: %s", args, timeout, out.String())
	}
	return strings.TrimSpace(out.String())
}
