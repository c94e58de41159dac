package kernel

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// release returns the running kernel's major and minor version.
func release(t *testing.T) (int, int) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	r := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(r, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(c rune) bool { return c < '0' || c > '9' }))
	return major, minor
}

// TestProbeMatchesVersion checks the probe against the version that
// introduced the feature: it runs on the host kernel and on the old one in
// the VM (make test-kernel), so both answers are seen.
func TestProbeMatchesVersion(t *testing.T) {
	t.Setenv(NoPeekOffEnv, "")
	major, minor := release(t)
	want := major > 6 || major == 6 && minor >= 9
	if got := Probe().TCPPeekOff; got != want {
		t.Fatalf("TCPPeekOff = %v on Linux %d.%d, want %v", got, major, minor, want)
	}
}

func TestNoPeekOffEnv(t *testing.T) {
	t.Setenv(NoPeekOffEnv, "1")
	if Probe().TCPPeekOff {
		t.Fatalf("%s=1 must force the fallback", NoPeekOffEnv)
	}
}

// TestCheck: every requirement is met here (and in make test-kernel's
// 6.1 guest), and a missing one is named with its version.
func TestCheck(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	err := check([]requirement{{"pidfd_open(2)", "5.3", func() error { return unix.ENOSYS }}})
	want := "this kernel lacks pidfd_open(2) (Linux 5.3; nsgate needs Linux " + Oldest + " or later): function not implemented"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if !errors.Is(err, unix.ENOSYS) {
		t.Fatal("the error does not wrap the probe's")
	}
}
