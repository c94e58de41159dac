#!/usr/bin/env bats
# The command line as rootlesskit, podman and people use it: help text that
# tools probe, and one-line errors with a non-zero status for bad input.

bats_require_minimum_version 1.5.0

NSGATE="${NSGATE:-$BATS_TEST_DIRNAME/../nsgate}"

@test "--help goes to stdout, exits 0 and lists every option tools probe" {
	run --separate-stderr "$NSGATE" --help
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	for opt in --netns-type --userns-path --configure --mtu --cidr --disable-host-loopback \
		--api-socket --enable-ipv6 --enable-sandbox --enable-seccomp --outbound-addr \
		--outbound-addr6 --disable-dns --exit-fd --ready-fd --macaddress --netns --help --version; do
		[[ "$output" == *"$opt"* ]] || { echo "missing $opt"; false; }
	done
	[[ "$output" == *"-a, --api-socket=PATH    specify API socket path"* ]]
	[[ "$output" == *"-p, --publish=[HOSTADDR:]HOSTPORT[:GUESTPORT][/tcp|/udp]"* ]]
	[[ "$output" != *"not implemented"* ]]
}

@test "-h is --help" {
	run "$NSGATE" -h
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "Usage: nsgate [OPTION]... PID|PATH [TAPNAME]" ]]
}

@test "--version prints slirp4netns's lines, with the commit make build stamped" {
	run "$NSGATE" --version
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" =~ ^nsgate\ version\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
	# make build stamps HEAD (-dirty with uncommitted changes): what git says.
	head=$(git -C "$BATS_TEST_DIRNAME" rev-parse HEAD)
	[[ "${lines[1]}" =~ ^commit:\ ${head}(-dirty)?$ ]] || { echo "line 2: ${lines[1]}, HEAD $head"; false; }
	# slirp4netns's own scripts gate --outbound-addr on >= 2, --disable-dns on >= 3.
	[ "${lines[2]}" = "SLIRP_CONFIG_VERSION_MAX: 4" ]
}

@test "no target: usage on stderr, exit 2" {
	run --separate-stderr "$NSGATE"
	[ "$status" -eq 2 ]
	[ -z "$output" ]
	[[ "$stderr" == *"Usage: nsgate"* ]]
	[[ "$stderr" == *"nsgate: missing target"* ]]
}

# error ARGS... : nsgate fails with status 1 and exactly one line on stderr.
expect_error() {
	local want="$1"; shift
	run --separate-stderr "$NSGATE" "$@"
	echo "status=$status stderr=$stderr"
	[ "$status" -eq 1 ]
	[ -z "$output" ]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[ "$stderr" = "nsgate: $want" ]
}

@test "bad --mtu values are named" {
	expect_error '--mtu "0": MTU must be a positive integer (< 65522)' --mtu 0 1
	expect_error '--mtu "65522": MTU must be a positive integer (< 65522)' --mtu=65522 1
	expect_error '--mtu "fast": MTU must be a positive integer (< 65522)' -m fast 1
}

@test "bad --cidr values get slirp4netns's messages and the value" {
	expect_error '--cidr "foo": invalid CIDR' --cidr foo 1
	expect_error '--cidr "10.0.2.0/26": prefix length needs to be 1-25' --cidr=10.0.2.0/26 1
	expect_error '--cidr "10.0.2.100/24": CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24' --cidr=10.0.2.100/24 1
}

@test "a target that does not exist" {
	expect_error 'target PID 2147483646: no such process' 2147483646 tap0
	expect_error 'network namespace path "/nonexistent/netns": no such file or directory' --netns-type=path /nonexistent/netns tap0
	expect_error '--netns "/nonexistent/netns": no such file or directory' --netns /nonexistent/netns
	expect_error 'target "abc": PID must be a positive integer' --netns-type=pid abc
}

@test "other bad input" {
	expect_error "--api-socket \"/$(printf 'x%.0s' {1..110})\": path too long for a unix socket (111 bytes, at most 107)" --api-socket "/$(printf 'x%.0s' {1..110})" 1
	expect_error '--publish "80:8080-8081": host ports 80 and guest ports 8080-8081 differ in number' -p 80:8080-8081 1
	expect_error '--publish "1.2.3.4:x:80": host port: "x" is not a port number (1-65535)' -p 1.2.3.4:x:80 1
	expect_error "unrecognized option '--frobnicate'" --frobnicate 1
	expect_error '--macaddress needs --configure (-c)' --macaddress=02:00:00:00:00:01 1
	expect_error '--exit-fd "x": exit-fd must be a non-negative integer' -e x 1
	expect_error '--netns-type "foo": must be pid or path' --netns-type=foo 1
	expect_error 'tap name "this-name-is-too-long": an interface name is 1-15 characters without '"'/'"', '"':'"' or spaces' 1 this-name-is-too-long
}

@test "--outbound-addr needs an address of this host" {
	expect_error '--outbound-addr "192.0.2.77": has to be a valid IPv4 address or interface name (not an address of this host: cannot assign requested address)' --outbound-addr=192.0.2.77 1
	expect_error '--outbound-addr "nosuchif0": has to be a valid IPv4 address or interface name (no such address or interface)' --outbound-addr nosuchif0 1
	expect_error '--enable-sandbox cannot be used with -- CMD' --enable-sandbox -- true
}

@test "spawn mode needs a command" {
	expect_error 'no command after --' --
}

@test "--configure on nsgate's own network namespace is refused" {
	expect_error "refusing --configure on nsgate's own network namespace (/proc/$$/ns/net): give the PID or namespace file of the target" -c $$
	expect_error "refusing --configure on nsgate's own network namespace (/proc/self/ns/net): give the PID or namespace file of the target" -c --netns /proc/self/ns/net
}

@test "a --ready-fd that is not open is an error" {
	expect_error "ready fd 9 is not open: the caller must pass --ready-fd an open descriptor" -r 9 $$
}
