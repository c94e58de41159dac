#!/usr/bin/env bash
# tests/vm/image.sh OUT: builds the guest of the VM tests (vm_integration_test.go)
# into OUT: vmlinuz, Debian 12's packaged kernel (as make test-kernel boots),
# and initrd.gz, a busybox initramfs with socat (and iperf3, if installed)
# and the virtio-net driver, whose init (tests/vm/init) runs the step the
# kernel command line names.
# Needs what tests/kernel/run.sh needs, and socat.
set -euo pipefail
out=$1
cd "$(dirname "$0")/../.."
. tests/kernel/lib.sh
deb=$(kernel_deb)

work=$(mktemp -d /tmp/nsgate-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
kernel_unpack "$deb" "$work"
root=$work/root
mkdir -p "$root"/{bin,etc,lib/modules,proc,sys,dev,tmp}

# virtio-net and what it needs, in load order (tests/vm/init loads them).
mods="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"
for m in $mods; do
	f=$(find "$work/pkg/lib/modules/$kver" -name "$m.ko*" | head -1)
	if [ -z "$f" ]; then
		echo "tests/vm/image.sh: no module $m in $(basename "$deb")" >&2
		exit 1
	fi
	cp "$f" "$root/lib/modules/"
done
for m in "$root"/lib/modules/*.ko.xz; do
	if [ -e "$m" ]; then xz -d "$m"; fi
done
echo "$mods" > "$root/etc/modules"

cp "$(command -v busybox)" "$root/bin/busybox"
for a in sh mount mkdir cat echo insmod poweroff ip udhcpc ping nslookup sha256sum head sleep grep sed tr ls rm sync awk; do
	ln -s busybox "$root/bin/$a"
done
cp "$(command -v socat)" "$root/bin/socat"
# iperf3 for tests/vm/bench.sh, where installed (make test does not need it).
if command -v iperf3 >/dev/null; then cp "$(command -v iperf3)" "$root/bin/iperf3"; fi
copy_with_libs "$root"
cp tests/vm/init "$root/init"
cp tests/vm/udhcpc.script "$root/etc/udhcpc.script"
chmod 755 "$root/init" "$root/etc/udhcpc.script"

mkdir -p "$out"
cp "$vmlinuz" "$out/vmlinuz"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.gz"
echo "tests/vm/image.sh: $kver, initramfs of $(du -k "$out/initrd.gz" | cut -f1) KiB in $out"
