#!/usr/bin/env bats
# Rootless podman (Debian's 4.3) runs nsgate as its slirp4netns
# (containers.conf: network_cmd_path). podman starts it as
#   nsgate --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp
#          --enable-ipv6 -c -e 3 -r 4 [--api-socket P] --netns-type=path NSPATH tap0
# and, with port_handler=slirp4netns, adds the -p forwards over the API socket.
#
# Set-up: vfs storage, runc, cgroupfs, an image imported from a busybox-static
# rootfs, everything under a scratch directory, and a short XDG_RUNTIME_DIR
# (the API socket's path must fit in a unix socket address).

bats_require_minimum_version 1.5.0

load lib/world

setup() {
	world_up
	RD=$(mktemp -d /tmp/nsgr.XXXX) # short: podman puts the API socket below it
	chown "$TEST_USER" "$RD"
	chmod 0700 "$RD"
	cat > "$TMP/containers.conf" <<-CONF
		[engine]
		cgroup_manager = "cgroupfs"
		events_logger = "file"
		runtime = "runc"
		network_cmd_path = "$TMP/nsgate"
	CONF
	cat > "$TMP/storage.conf" <<-CONF
		[storage]
		driver = "vfs"
		graphroot = "$TMP/user/storage"
		runroot = "$RD/storage"
	CONF
	mkdir -p "$TMP/rootfs/bin" "$TMP/rootfs/www"
	cp /bin/busybox "$TMP/rootfs/bin/busybox"
	ln -s busybox "$TMP/rootfs/bin/sh"
	echo "hello from a podman container" > "$TMP/rootfs/www/index.html"
	tar -C "$TMP/rootfs" -cf "$TMP/rootfs.tar" .
	chmod 0644 "$TMP"/*.conf "$TMP/rootfs.tar"
	run pod import "$TMP/rootfs.tar" localhost/nsgate-bb
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

teardown() {
	pod rm -af -t 0 >/dev/null 2>&1 || true
	# podman's pause process holds its namespaces between commands.
	if [ -s "$RD/libpod/tmp/pause.pid" ]; then
		track_pid "$(cat "$RD/libpod/tmp/pause.pid")"
	fi
	world_down
	rm -rf "$RD"
}

# pod runs podman as the test user in the host namespace. The mount
# namespace ip netns exec makes has a fresh /sys without cgroups; runc wants
# a cgroup file system there, so a cgroup2 one is mounted (in that private
# mount namespace only).
pod() {
	ip netns exec "$H" sh -c 'mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null; exec "$@"' sh \
		setpriv --reuid "$TEST_USER" --regid "$TEST_USER" --clear-groups \
		env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$TMP/user" XDG_RUNTIME_DIR="$RD" \
		CONTAINERS_CONF="$TMP/containers.conf" CONTAINERS_STORAGE_CONF="$TMP/storage.conf" podman "$@"
}

# nsgate_running reports whether a process runs the nsgate binary of this
# test (so the page did not come through some other network helper).
nsgate_running() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = "$TMP/nsgate" ] && return 0
	done
	return 1
}

serve() {
	run pod run -d --name web "$@" localhost/nsgate-bb busybox httpd -f -p 80 -h /www
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "podman --network slirp4netns:port_handler=slirp4netns -p 8080:80 serves a page to the host through nsgate" {
	serve --network slirp4netns:port_handler=slirp4netns -p 8080:80
	nsgate_running
	run http_get 127.0.0.1 8080
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello from a podman container" ]
	run pod exec web busybox ip -4 -o addr show tap0
	[[ "$output" == *"inet 10.0.2.100/24"* ]]
}

@test "podman --network slirp4netns (default port handler) -p 8081:80 serves a page to the host" {
	serve --network slirp4netns -p 8081:80
	nsgate_running
	run http_get 127.0.0.1 8081
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello from a podman container" ]
}

@test "podman --network slirp4netns (podman passes --enable-ipv6): the container has an fd00::/64 address and a default route via fe80::2 before it starts, and fetches a page from the remote namespace over IPv6" {
	mkdir -p "$TMP/www6"
	echo "hello over IPv6" > "$TMP/www6/index.html"
	chmod -R a+rX "$TMP/www6"
	# Not in_remote: a function run in the background is a subshell, and $!
	# would be its PID, not the server's, which then outlives the test.
	ip netns exec "$R" busybox httpd -f -p "[$REMOTE_ADDR6]:8082" -h "$TMP/www6" 3>&- &
	track_pid $!
	# No wait for an advertisement or for duplicate address detection:
	# nsgate -c -6 configured both before podman started the container.
	run pod run --rm --network slirp4netns localhost/nsgate-bb sh -c \
		"busybox ip -6 -o addr show dev tap0; busybox ip -6 route show default; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 10 $REMOTE_ADDR6 8082"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" =~ inet6\ fd00::[0-9a-f:]+/64\ scope\ global ]]
	[[ "$output" == *"default via fe80::2 dev tap0"* ]]
	[[ "$output" == *"hello over IPv6"* ]]
}
