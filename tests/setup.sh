#!/bin/sh
# Prepares a machine for nsgate's tests; make test runs it (as root).
# - the unprivileged user the rootless tests run as;
# - /dev/net/tun usable by unprivileged users (0666 is Debian's default; some
#   sandboxes ship it 0600).
set -eu
if ! id nsgate-test >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin nsgate-test
fi
if [ ! -e /dev/net/tun ]; then
	mkdir -p /dev/net
	mknod -m 0666 /dev/net/tun c 10 200
fi
chmod 0666 /dev/net/tun
# Subordinate ids for the rootless container tools' tests (rootlesskit,
# podman map a range besides the user's own id).
for f in /etc/subuid /etc/subgid; do
	touch "$f"
	if ! grep -q '^nsgate-test:' "$f"; then
		echo "nsgate-test:300000:65536" >> "$f"
	fi
done
# rootlesskit v3 for the pasta drop-in suite (tests/pasta.bats): Debian has
# only 1.1, which has no pasta driver. Where the test user can run it.
RK3=/usr/local/libexec/nsgate-test/rootlesskit
if [ ! -x "$RK3" ] || ! "$RK3" --version 2>/dev/null | grep -q '^rootlesskit version 3\.3\.0$'; then
	mkdir -p "$(dirname "$RK3")"
	GOBIN="$(dirname "$RK3")" go install github.com/rootless-containers/rootlesskit/v3/cmd/rootlesskit@v3.3.0
fi
