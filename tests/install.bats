#!/usr/bin/env bats
# make install and make uninstall, as a packager runs them (DESTDIR, PREFIX):
# the binary, and a man page that man renders and that covers every option.

bats_require_minimum_version 1.5.0

setup() {
	DEST=$(mktemp -d /tmp/nsgate-install.XXXXXX)
	SRC="$BATS_TEST_DIRNAME/.."
}

teardown() {
	rm -rf "$DEST"
}

@test "make install DESTDIR= PREFIX=: the binary runs, man -l renders the page with every option; make uninstall removes both" {
	run make -s -C "$SRC" install DESTDIR="$DEST" PREFIX=/usr
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	[ -x "$DEST/usr/bin/nsgate" ]
	run "$DEST/usr/bin/nsgate" --version
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "nsgate version "* ]]
	page="$DEST/usr/share/man/man1/nsgate.1"
	[ -f "$page" ]
	run env MANPAGER=cat MANWIDTH=100 man -l "$page"
	[ "$status" -eq 0 ]
	man="$output"
	for section in NAME SYNOPSIS DESCRIPTION OPTIONS "THE NETWORK" "SPAWN MODE" API ENVIRONMENT KERNELS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
		grep -q "^$section\$" <<<"$man" || { echo "no section $section"; false; }
	done
	# Every long option --help lists is in the manual.
	opts=$("$DEST/usr/bin/nsgate" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
	[ -n "$opts" ]
	for opt in $opts; do
		grep -q -- "$opt" <<<"$man" || { echo "the man page lacks $opt"; false; }
	done
	# --help's last line names the manual.
	[[ "$("$DEST/usr/bin/nsgate" --help | tail -n 1)" == *"man nsgate"* ]]
	run make -s -C "$SRC" uninstall DESTDIR="$DEST" PREFIX=/usr
	[ "$status" -eq 0 ]
	[ ! -e "$DEST/usr/bin/nsgate" ]
	[ ! -e "$page" ]
}
