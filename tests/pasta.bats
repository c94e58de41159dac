#!/usr/bin/env bats
# rootlesskit v3 (go install'ed by tests/setup.sh; Debian has only 1.1) runs
# nsgate as its pasta, as an unprivileged user: --net=pasta
# --pasta-binary=$TMP/pasta, a symlink named pasta to nsgate. rootlesskit
# builds pasta's command line (pkg/network/pasta), probes its features with
# --version, and waits for pasta's parent to exit before the child runs.

bats_require_minimum_version 1.5.0

load lib/world

ROOTLESSKIT3="${ROOTLESSKIT3:-/usr/local/libexec/nsgate-test/rootlesskit}"

setup() {
	world_up
	ln -s nsgate "$TMP/pasta"
}
teardown() { world_down; }

rootlesskit_pasta() {
	(as_user "$ROOTLESSKIT3" --state-dir="$TMP/user/state" --net=pasta --pasta-binary="$TMP/pasta" --copy-up=/etc "$@")
}

# host_loopback_service starts a server on the host namespace's 127.0.0.1:7777
# that answers one connection with one line. ip netns exec execs socat, so
# $! is socat's own PID, which world_down ends; fd 3 is closed, or bats
# would wait for it.
host_loopback_service() {
	ip netns exec "$H" socat TCP-LISTEN:7777,bind=127.0.0.1,reuseaddr SYSTEM:'echo host-loopback' 3>&- &
	track_pid $!
	sleep 0.2
}

@test "rootlesskit v3 --net=pasta: version probes, 10.0.2.100/24 via 10.0.2.2 at MTU 65520, the host's loopback through 10.0.2.2, and 20 MB to the remote namespace" {
	# rootlesskit's probes: nsgate lacks --host-lo-to-ns-lo and
	# --conf-path, so they must fail, and rootlesskit then passes neither.
	run "$TMP/pasta" --version
	[ "$status" -eq 0 ]
	run "$TMP/pasta" --host-lo-to-ns-lo --version
	[ "$status" -eq 1 ]
	[[ "$output" == *"unrecognized option '--host-lo-to-ns-lo'"* ]]
	run "$TMP/pasta" --conf-path=/dev/null --version
	[ "$status" -eq 1 ]
	remote_sink
	host_loopback_service
	run rootlesskit_pasta sh -c "ip -4 -o addr show tap0; ip route show default; cat /sys/class/net/tap0/mtu
		socat -t 5 - TCP:10.0.2.2:7777 </dev/null
		socat -t 30 - TCP:$REMOTE_ADDR:5000 < $TMP/data > /dev/null"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"inet 10.0.2.100/24"* ]]
	[[ "$output" == *"default via 10.0.2.2 dev tap0"* ]]
	[[ "$output" == *$'\n65520'* ]]
	[[ "$output" == *"host-loopback"* ]]
	remote_sink_got_all
	# pasta exits with the child: no nsgate is left behind.
	for _ in $(seq 30); do
		pgrep -f "^$TMP/pasta " >/dev/null || break
		sleep 0.1
	done
	! pgrep -f "^$TMP/pasta "
}

@test "rootlesskit v3 --net=pasta --disable-host-loopback (--no-map-gw): 10.0.2.2 does not reach the host's loopback, the remote namespace still answers" {
	remote_sink
	host_loopback_service
	run rootlesskit_pasta --disable-host-loopback sh -c "if socat -t 3 - TCP:10.0.2.2:7777,connect-timeout=3 </dev/null; then echo REACHED; else echo refused; fi
		socat -t 30 - TCP:$REMOTE_ADDR:5000 < $TMP/data > /dev/null"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"refused"* ]]
	[[ "$output" != *"REACHED"* ]]
	[[ "$output" != *"host-loopback"* ]]
	remote_sink_got_all
}

@test "rootlesskit v3 --net=pasta --ipv6: fd00::100/64 via fd00::2 before the child starts, and 20 MB to the remote namespace over IPv6" {
	remote_sink "TCP6-LISTEN:5000"
	run rootlesskit_pasta --ipv6 sh -c "ip -6 -o addr show dev tap0 scope global; ip -6 route show default
		socat -t 30 - 'TCP6:[$REMOTE_ADDR6]:5000' < $TMP/data > /dev/null"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"inet6 fd00::100/64 scope global"* ]]
	[[ "$output" == *"default via fd00::2 dev tap0"* ]]
	remote_sink_got_all
}

@test "rootlesskit v3 --net=pasta --port-driver=implicit: busybox httpd on a high port in the child is served on the host (pasta's -t auto)" {
	mkdir -p "$TMP/www"
	echo "hello through -t auto" > "$TMP/www/index.html"
	chmod -R a+rX "$TMP/www"
	as_user "$ROOTLESSKIT3" --state-dir="$TMP/user/state" --net=pasta --pasta-binary="$TMP/pasta" --copy-up=/etc \
		--port-driver=implicit busybox httpd -f -p 18080 -h "$TMP/www" 3>&- &
	track_pid $!
	run http_get 127.0.0.1 18080
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello through -t auto" ]
	# and from the remote namespace, to the host's address
	run in_remote sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | socat -t 5 - TCP:$HOST_ADDR:18080"
	[[ "$output" == *"hello through -t auto"* ]]
}
