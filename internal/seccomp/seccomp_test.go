package seccomp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// The filter is tried in a child process: it cannot be taken off again.
const childEnv = "NSGATE_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

// child applies the filter, then reports what is allowed and what is not.
func child(dir string) int {
	if err := Apply(); err != nil {
		fmt.Println("apply:", err)
		return 1
	}
	report := func(name string, err error) { fmt.Printf("%s: %v\n", name, err) }
	// Allowed: sockets, and new threads (a burst of blocked goroutines
	// makes the runtime start some).
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	report("listen", err)
	if err == nil {
		c, err := net.Dial("tcp4", l.Addr().String())
		report("dial", err)
		if err == nil {
			c.Close()
		}
		l.Close()
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			var ts = unix.Timespec{Nsec: 1e6}
			unix.Nanosleep(&ts, nil)
		}()
	}
	wg.Wait()
	report("threads", nil)
	// Refused: the filesystem, exec, and processes.
	report("mkdir", unix.Mkdirat(unix.AT_FDCWD, filepath.Join(dir, "x"), 0o700))
	_, err = unix.Open(filepath.Join(dir, "f"), unix.O_CREAT|unix.O_WRONLY, 0o600)
	report("open", err)
	report("execve", unix.Exec("/bin/true", []string{"true"}, nil))
	_, _, e := unix.RawSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0) // fork
	report("fork", e)
	_, _, e = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	report("clone3", e)
	report("ptrace", unix.PtraceAttach(1))
	return 0
}

func TestFilter(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Fatalf("no system call list for %s: add one beside syscalls_amd64.go", runtime.GOARCH)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := []string{
		"listen: <nil>", "dial: <nil>", "threads: <nil>",
		"mkdir: operation not permitted", "open: operation not permitted",
		"execve: operation not permitted", "fork: operation not permitted",
		"clone3: function not implemented", "ptrace: operation not permitted",
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("under the filter:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the child created %v", entries)
	}
}
