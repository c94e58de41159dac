# A sealed world for the bats suites that drive nsgate through other tools
# (rootlesskit, podman), the same shape as the Go tests' internal/testnet:
#   - a "host" namespace $H where the tools and nsgate run, whose resolver
#     (/etc/netns/$H/resolv.conf) is the remote namespace;
#   - a "remote" namespace $R at 198.51.100.2 (TEST-NET-2) and
#     2001:db8:1::2 (the IPv6 documentation prefix), reached from $H over a
#     veth (198.51.100.1, 2001:db8:1::1).
# Nothing in it has a route out of the machine. Processes the tests start
# are recorded with track_pid and ended by PID in world_down.

NSGATE="${NSGATE:-$BATS_TEST_DIRNAME/../nsgate}"
HOST_ADDR=198.51.100.1
REMOTE_ADDR=198.51.100.2
HOST_ADDR6=2001:db8:1::1
REMOTE_ADDR6=2001:db8:1::2
TEST_USER=nsgate-test

world_up() {
	local id
	id=$(printf '%04x%02x' $$ "$BATS_TEST_NUMBER")
	H=nsgb-h-$id
	R=nsgb-r-$id
	PIDS=()
	ip netns add "$H"
	ip netns add "$R"
	ip link add "vh$id" netns "$H" type veth peer name "vr$id" netns "$R"
	ip -n "$H" addr add "$HOST_ADDR/24" dev "vh$id"
	ip -n "$R" addr add "$REMOTE_ADDR/24" dev "vr$id"
	ip -n "$H" addr add "$HOST_ADDR6/64" dev "vh$id" nodad
	ip -n "$R" addr add "$REMOTE_ADDR6/64" dev "vr$id" nodad
	for ns in "$H" "$R"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$H" link set "vh$id" up
	ip -n "$R" link set "vr$id" up
	ip -n "$R" route add default via "$HOST_ADDR"
	ip -n "$R" -6 route add default via "$HOST_ADDR6"
	mkdir -p "/etc/netns/$H"
	echo "nameserver $REMOTE_ADDR" > "/etc/netns/$H/resolv.conf"
	# Scratch space the test user can use, and nsgate where it can run it.
	TMP=$(mktemp -d /tmp/nsgate-bats.XXXXXX)
	chmod 0755 "$TMP"
	mkdir -m 0777 "$TMP/user"
	cp "$NSGATE" "$TMP/nsgate"
	chmod 0755 "$TMP/nsgate"
}

track_pid() { PIDS+=("$1"); }

world_down() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$p" 2>/dev/null || true
	done
	ip netns del "$H" 2>/dev/null || true
	ip netns del "$R" 2>/dev/null || true
	rm -rf "/etc/netns/$H" "$TMP"
}

# in_host and in_remote run a command in the host or the remote namespace,
# in the foreground. For a server in the background, call ip netns exec
# itself: $! of a function run with & is its subshell's PID, and the server,
# a child of that subshell, would outlive world_down's kill.
in_host() { ip netns exec "$H" "$@"; }
in_remote() { ip netns exec "$R" "$@"; }

# as_user runs a command as the unprivileged test user in the host
# namespace, with a home and runtime directory of its own. It execs: run
# in the background, $! is then the command's own PID, for track_pid.
as_user() {
	exec ip netns exec "$H" setpriv --reuid "$TEST_USER" --regid "$TEST_USER" --clear-groups \
		env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$TMP/user" \
		XDG_RUNTIME_DIR="$TMP/user/run" "$@"
}

# http_get HOST PORT: the body of GET / from inside the host namespace,
# retried for up to 10 s while the server or the forward comes up.
http_get() {
	local out
	for _ in $(seq 50); do
		if out=$(printf 'GET / HTTP/1.0\r\n\r\n' | in_host socat -t 5 - "TCP:$1:$2" 2>/dev/null) && [[ "$out" == *"200 OK"* ]]; then
			printf '%s\n' "${out##*$'\r\n\r\n'}"
			return 0
		fi
		sleep 0.2
	done
	echo "no answer from $1:$2" >&2
	return 1
}

# remote_sink [LISTEN] writes 20 MB of random data to $TMP/data and starts
# a server in the remote namespace (socat address LISTEN, by default
# TCP-LISTEN:5000) that stores one connection's bytes in $TMP/recv.
remote_sink() {
	head -c 20000000 /dev/urandom > "$TMP/data"
	chmod 0644 "$TMP/data"
	# ip netns exec execs socat: $! is socat's own PID, for world_down;
	# fd 3 is closed, or a server left waiting would hold bats open.
	ip netns exec "$R" socat -u "${1:-TCP-LISTEN:5000},reuseaddr" "OPEN:$TMP/recv,creat,trunc" 3>&- &
	track_pid $!
	sleep 0.3
}

# remote_sink_got_all waits up to 5 s for all 20 MB and compares sha256.
remote_sink_got_all() {
	for _ in $(seq 50); do [ -s "$TMP/recv" ] && [ "$(stat -c %s "$TMP/recv")" -eq 20000000 ] && break; sleep 0.1; done
	[ "$(sha256sum < "$TMP/data")" = "$(sha256sum < "$TMP/recv")" ]
}
