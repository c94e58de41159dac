#!/usr/bin/env bats
# rootlesskit (Debian's, as an unprivileged user) drives nsgate as its
# slirp4netns: --net=slirp4netns --slirp4netns-binary=nsgate. rootlesskit
# probes nsgate's --help for the options it may pass: the first test has it
# pass --enable-sandbox and --enable-seccomp; with --port-driver=slirp4netns
# it adds forwards through nsgate's API socket.

bats_require_minimum_version 1.5.0

load lib/world

setup() { world_up; }
teardown() { world_down; }

rootlesskit_nsgate() {
	(as_user rootlesskit --state-dir="$TMP/user/state" --net=slirp4netns --slirp4netns-binary="$TMP/nsgate" \
		--copy-up=/etc --disable-host-loopback --mtu=65520 "$@")
}

# rootlesskit_bg starts rootlesskit_nsgate in the background, tracked.
rootlesskit_bg() {
	as_user rootlesskit --state-dir="$TMP/user/state" --net=slirp4netns --slirp4netns-binary="$TMP/nsgate" \
		--copy-up=/etc --disable-host-loopback --mtu=65520 "$@" 3>&- &
	track_pid $!
}

@test "rootlesskit (nsgate sandboxed): the child gets 10.0.2.100 via 10.0.2.2, MTU 65520, and TCP to the remote namespace" {
	# The child waits (socat -t) until the server closes after the last
	# byte: when the child exits, its namespace goes, and anything still in
	# flight with it.
	remote_sink
	run rootlesskit_nsgate --slirp4netns-sandbox=true --slirp4netns-seccomp=true sh -c "ip -4 -o addr show tap0; ip route show default; cat /sys/class/net/tap0/mtu; socat -t 30 - TCP:$REMOTE_ADDR:5000 < $TMP/data > /dev/null"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"inet 10.0.2.100/24"* ]]
	[[ "$output" == *"default via 10.0.2.2 dev tap0"* ]]
	[[ "$output" == *$'\n65520'* ]]
	remote_sink_got_all
}

@test "rootlesskit --ipv6: the child autoconfigures an fd00::/64 address and a default route via fe80::2 from nsgate's advertisement, and 20 MB reach the remote namespace over IPv6" {
	remote_sink "TCP6-LISTEN:5000"
	# rootlesskit does not configure IPv6 itself: the kernel does, from the
	# router advertisement, after duplicate address detection.
	run rootlesskit_nsgate --ipv6 sh -c "for i in \$(seq 100); do ip -6 -o addr show dev tap0 scope global -tentative | grep -q fd00:: && ip -6 route show default | grep -q fe80::2 && break; sleep 0.1; done
		ip -6 -o addr show dev tap0 scope global; ip -6 route show default
		socat -t 30 - 'TCP6:[$REMOTE_ADDR6]:5000' < $TMP/data > /dev/null"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" =~ inet6\ fd00::[0-9a-f:]+/64\ scope\ global\ dynamic ]]
	[[ "$output" == *"default via fe80::2 dev tap0 proto ra"* ]]
	remote_sink_got_all
}

@test "rootlesskit at MTU 1500: the tap it made offers TSO once nsgate attaches, and 20 MB arrive intact" {
	remote_sink
	run as_user rootlesskit --state-dir="$TMP/user/state" --net=slirp4netns --slirp4netns-binary="$TMP/nsgate" \
		--copy-up=/etc --mtu=1500 sh -c "echo mtu=\$(cat /sys/class/net/tap0/mtu); ethtool -k tap0; socat -t 30 - TCP:$REMOTE_ADDR:5000 < $TMP/data > /dev/null"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"mtu=1500"* ]]
	[[ "$output" == *"tcp-segmentation-offload: on"* ]]
	[[ "$output" == *"tx-checksumming: on"* ]]
	remote_sink_got_all
}

# page_through DRIVER PORT: a page served by busybox httpd in rootlesskit's
# child on port 80 arrives at the host's 127.0.0.1:PORT, forwarded by the
# port driver DRIVER.
page_through() {
	mkdir -p "$TMP/www"
	echo "hello from rootlesskit's child" > "$TMP/www/index.html"
	chmod -R a+rX "$TMP/www"
	rootlesskit_bg --port-driver="$1" -p "127.0.0.1:$2:80/tcp" busybox httpd -f -p 80 -h "$TMP/www"
	run http_get 127.0.0.1 "$2"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello from rootlesskit's child" ]
}

@test "rootlesskit --port-driver=slirp4netns: a page in the child is served on the host through nsgate's API socket" {
	page_through slirp4netns 8080
}

@test "rootlesskit --port-driver=builtin: a page in the child is served on the host" {
	page_through builtin 8081
}
