#!/usr/bin/env bash
# make test-kernel: nsgate's suites on the kernel Debian 12 ships (6.1, no
# SO_PEEK_OFF on TCP), booted under qemu-system-x86_64 with TCG (no KVM
# needed) from an initramfs built here. The guest has no network device:
# its traffic stays in the namespaces the tests build inside it.
#
# Needs root only for apt-get download's cache directory; needs
# qemu-system-x86, cpio, busybox-static, iproute2, util-linux, iputils-ping,
# procps and Go. Prints the guest's console; passes when the guest's suites do.
#
# Environment: KERNEL_SUITE (another Debian release to take the kernel from,
# say bullseye), KERNEL_PKG (default: what linux-image-amd64 depends on),
# KERNEL_CACHE (where the package is kept, default /var/cache/nsgate-kernel),
# KERNEL_TIMEOUT (seconds, default 900), GUEST_RUN (a -test.run filter in place
# of the guest's own; the sandboxed rerun is then skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

. tests/kernel/lib.sh
deb=$(kernel_deb)
pkg=$(basename "$deb" | cut -d_ -f1)

work=$(mktemp -d /tmp/nsgate-kernel.XXXXXX)
trap 'rm -rf "$work"' EXIT
kernel_unpack "$deb" "$work"
root=$work/root
mkdir -p "$root"/{bin,sbin,etc,lib/modules,proc,sys,dev,tmp,run,root}

# The guest's modules, from the same package.
for m in tun veth; do
	find "$work/pkg/lib/modules/$kver" -name "$m.ko*" -exec cp {} "$root/lib/modules/" \;
done
for m in "$root"/lib/modules/*.ko.xz; do
	if [ -e "$m" ]; then xz -d "$m"; fi
done
ls "$root/lib/modules/tun.ko" "$root/lib/modules/veth.ko" >/dev/null

# nsgate and the test binaries (no Go in the guest).
go build -o "$root/bin/nsgate" .
go test -c -tags integration -o "$root/bin/nsgate.test" .
go test -c -o "$root/bin/tcp.test" ./internal/tcp
go test -c -o "$root/bin/kernel.test" ./internal/kernel

# The tools the tests run, with the libraries they link.
cp "$(command -v busybox)" "$root/bin/busybox"
for a in sh mount umount mkdir cat echo insmod poweroff switch_root cp chmod ln grep sed uname tee rm ls sync mountpoint; do
	ln -s busybox "$root/bin/$a"
done
for t in ip setpriv unshare nsenter sleep env ping sysctl ethtool socat; do
	p=$(command -v "$t")
	cp "$p" "$root/bin/$t"
done
copy_with_libs "$root"

cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nsgate-test:x:999:999:nsgate test user:/nonexistent:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
nsgate-test:x:999:
G
echo 'passwd: files' > "$root/etc/nsswitch.conf"
echo 'group: files' >> "$root/etc/nsswitch.conf"
echo 'nameserver 127.0.0.1' > "$root/etc/resolv.conf"
cp tests/kernel/init "$root/init"
chmod 755 "$root/init"
echo "${GUEST_RUN:-}" > "$root/etc/guest-run"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"
echo "test-kernel: booting $pkg ($kver) with a $(du -m "$work/initrd.gz" | cut -f1) MiB initramfs under TCG"

log=$work/console.log
set +e
timeout "${KERNEL_TIMEOUT:-900}" qemu-system-x86_64 \
	-machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 3072 \
	-kernel "$vmlinuz" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
	-nographic -no-reboot -nic none 2>&1 | tee "$log"
set -e
tr -d '\r' < "$log" | grep -q '^NSGATE-KERNEL: PASS' || {
	echo "test-kernel: the suites did not pass on $kver (see above)" >&2
	exit 1
}
echo "test-kernel: passed on $kver"
