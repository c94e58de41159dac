# Shared by tests/kernel/run.sh (the suites on Debian's kernels) and
# tests/vm/image.sh (the guest of the VM tests): fetching Debian's packaged
# kernel, unpacking it, and copying programs with their libraries into an
# initramfs.
# Source it from the repository's root.

# kernel_deb prints the path of the kernel package, downloading it into the
# cache the first time. Environment: KERNEL_SUITE (another Debian release to
# take the kernel from, say bullseye), KERNEL_PKG (default: what
# linux-image-amd64 depends on), KERNEL_CACHE (default /var/cache/nsgate-kernel).
kernel_deb() {
	cache=${KERNEL_CACHE:-/var/cache/nsgate-kernel}
	mkdir -p "$cache"
	chmod 755 "$cache"
	chown _apt "$cache" 2>/dev/null || true # apt-get download fetches as _apt
	# KERNEL_SUITE names another Debian release (bullseye: Linux 5.10, the
	# oldest nsgate supports). Its package lists go to a private apt state in
	# the cache, so the machine's own sources and lists stay as they are.
	apt_opts=()
	if [ -n "${KERNEL_SUITE:-}" ]; then
		state=$cache/apt-$KERNEL_SUITE
		mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
		chown -R _apt "$state/lists" 2>/dev/null || true
		# The mirror this machine's apt already uses for its own release.
		. /etc/os-release
		mirror=$(apt-cache policy | awk -v s=" $VERSION_CODENAME/main " 'index($0, s) {print $2; exit}')
		if [ -z "$mirror" ]; then
			echo "test-kernel: no apt source for $VERSION_CODENAME/main to take $KERNEL_SUITE from" >&2
			return 1
		fi
		echo "deb $mirror $KERNEL_SUITE main" > "$state/sources.list"
		apt_opts=(-o Dir::Etc::SourceList="$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
			-o Dir::State::Lists="$state/lists" -o Dir::Cache="$state/cache")
		apt-get "${apt_opts[@]}" update -qq
	fi
	pkg=${KERNEL_PKG:-$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}
	if [ -z "$pkg" ]; then
		echo "test-kernel: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2
		return 1
	fi
	deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | tail -1 || true)
	if [ -z "$deb" ]; then
		(cd "$cache" && apt-get "${apt_opts[@]}" download "$pkg" >/dev/null)
		deb=$(ls "$cache/${pkg}"_*.deb | tail -1)
	fi
	echo "$deb"
}

# kernel_unpack DEB DIR: unpacks the kernel package into DIR/pkg and sets
# vmlinuz (the kernel's path) and kver (its release).
kernel_unpack() {
	dpkg-deb -x "$1" "$2/pkg"
	vmlinuz=$(ls "$2"/pkg/boot/vmlinuz-*)
	kver=${vmlinuz##*/vmlinuz-}
}

# copy_with_libs ROOT: copies the shared libraries each binary in ROOT/bin
# links against (ldd) into ROOT, at the same paths.
copy_with_libs() {
	local root=$1 b libs lib
	for b in "$root"/bin/*; do
		[ -L "$b" ] && continue
		libs=$(ldd "$b" 2>/dev/null | grep -o '/[^ ]*' || true) # none: static
		for lib in $libs; do
			mkdir -p "$root$(dirname "$lib")"
			cp -n "$lib" "$root$lib"
		done
	done
}
