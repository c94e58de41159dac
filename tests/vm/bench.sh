#!/usr/bin/env bash
# make bench-vm: TCP between a qemu guest and the host, through nsgate
# --socket and through passt --socket, on the same guest image (Debian 12's
# kernel under TCG, tests/vm/image.sh) in the same run. Each round boots the
# guest once per driver; the guest runs iperf3 -c GATEWAY for 5 s each way
# against an iperf3 -s on the host's loopback (both drivers map the gateway
# the guest got by DHCP to the host's loopback). Prints each round and the
# medians, in Mbit/s as iperf3's receiver counted them, and each driver's
# CPU time (user and system) per GB moved.
#
# Runs in a network namespace of its own (torn down after), with a dummy
# interface on TEST-NET-3 holding the default route passt copies its
# addresses from. Needs root, qemu-system-x86, iperf3, passt.
# Environment: ROUNDS (default 3), PASST (the passt binary, default passt:
# point it at an upstream build to compare that one), BENCH_DRIVER_LOG=1
# (print each driver's log: nsgate's last line counts its frames).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-3}
passt=${PASST:-passt}
for c in qemu-system-x86_64 iperf3 "$passt"; do
	command -v "$c" >/dev/null || { echo "bench-vm: $c not found" >&2; exit 1; }
done
go build -o nsgate .
work=$(mktemp -d /tmp/nsgate-vmbench.XXXXXX)
chmod 755 "$work"
mkdir -m 777 "$work/sock"
# Both drivers run unprivileged, as users run them (passt started as root
# changes to nobody and, in Debian 12's version, never serves the guest):
# the test user tests/setup.sh makes.
user="setpriv --reuid=nsgate-test --regid=nsgate-test --clear-groups"
id nsgate-test >/dev/null || { echo "bench-vm: no user nsgate-test (run tests/setup.sh)" >&2; exit 1; }
ns=nsgate-vmbench-$$
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
./tests/vm/image.sh "$work/img" >/dev/null

ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
in_ns ip link add d0 type veth peer name d1
in_ns ip addr add 203.0.113.1/24 dev d0
in_ns ip link set d0 up
in_ns ip link set d1 up
in_ns ip route add default via 203.0.113.254
# Daemonized, with its PID in a file: ip netns exec may fork, and $! would
# then not be iperf3's.
in_ns iperf3 -s -B 127.0.0.1 -D -I "$work/iperf3.pid" >/dev/null 2>&1
for _ in $(seq 50); do [ -s "$work/iperf3.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$work/iperf3.pid")")

# run DRIVER: one boot; prints "up down cpu": Mbit/s each way, and the
# driver's CPU time in seconds.
run() {
	local sock=$work/sock/$1.sock log=$work/$1.log dpid
	rm -f "$sock"
	local cmd
	case $1 in
	nsgate) cmd=(./nsgate --socket "$sock" --one-off) ;;
	passt) cmd=("$passt" --socket "$sock" --one-off -f -q) ;;
	esac
	# bash's time reports the driver's CPU (user and system) in seconds.
	rm -f "$work/cpu"
	{ TIMEFORMAT='%U %S'; time in_ns $user "${cmd[@]}" 2>"$work/driver.log"; } 2>"$work/cpu" &
	dpid=$!
	pids+=("$dpid")
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	timeout 300 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 512 \
		-kernel "$work/img/vmlinuz" -initrd "$work/img/initrd.gz" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init vmtest=bench" \
		-nographic -no-reboot -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$sock" \
		-device virtio-net-pci,netdev=n0 </dev/null >"$log" 2>&1 || true
	wait "$dpid" 2>/dev/null || true
	local up down cpu
	cpu=$(awk '{print $1 + $2}' "$work/cpu" 2>/dev/null)
	up=$(tr -d '\r' <"$log" | awk '/^VM: iperf up/ {print $4}')
	down=$(tr -d '\r' <"$log" | awk '/^VM: iperf down/ {print $4}')
	if [ -z "$up" ] || [ -z "$down" ] || [ "$up" = failed ] || [ "$down" = failed ]; then
		echo "bench-vm: $1 gave no result; guest console and driver log:" >&2
		cat "$log" "$work/driver.log" >&2
		exit 1
	fi
	if [ -n "${BENCH_DRIVER_LOG:-}" ]; then cat "$work/driver.log" >&2; fi
	if [ -z "$cpu" ]; then
		echo "bench-vm: $1's CPU time is missing" >&2
		exit 1
	fi
	echo "$up $down $cpu"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A ups downs cpus
for r in $(seq "$rounds"); do
	for d in nsgate passt; do
		read -r up down cpu < <(run $d)
		# CPU per GB: the boot's driver CPU over what both transfers
		# moved (6 s each: iperf3's 5 and the omitted first second).
		cpu=$(awk -v c="$cpu" -v u="$up" -v d="$down" 'BEGIN {printf "%.2f", c / ((u + d) * 6 / 8 / 1000)}')
		echo "round $r $d: VM->host $up Mbit/s, host->VM $down Mbit/s, driver CPU $cpu s/GB"
		ups[$d]+="$up "
		downs[$d]+="$down "
		cpus[$d]+="$cpu "
	done
done
echo
printf '%-8s %14s %14s %18s\n' driver "VM->host" "host->VM" "driver CPU"
for d in nsgate passt; do
	mu=$(tr ' ' '\n' <<<"${ups[$d]}" | grep . | median)
	md=$(tr ' ' '\n' <<<"${downs[$d]}" | grep . | median)
	mc=$(tr ' ' '\n' <<<"${cpus[$d]}" | grep . | median)
	printf '%-8s %9s Mbit/s %9s Mbit/s %11s s/GB\n' "$d" "$mu" "$md" "$mc"
	eval "m_${d}_up=$mu m_${d}_down=$md m_${d}_cpu=$mc"
done
awk -v a="$m_nsgate_up" -v b="$m_passt_up" -v c="$m_nsgate_down" -v d="$m_passt_down" -v e="$m_nsgate_cpu" -v f="$m_passt_cpu" \
	'BEGIN {printf "nsgate/passt  %.2fx VM->host, %.2fx host->VM, %.2fx driver CPU per GB (medians of '"$rounds"' rounds)\n", a/b, c/d, (f > 0 ? e/f : 0)}'
