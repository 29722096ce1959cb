#!/usr/bin/env bash
# CPU seconds each process spends to move 1 GiB through ftpsgate (FTPS
# client -> ftpsgate -> plain vsftpd), twice each way, on loopback. With N
# cores, the sum bounds the rate any tuning of one process can reach:
# rate <= N x 1 GiB / (client + proxy + vsftpd seconds). Needs root and
# make build; run by hand (sudo scripts/bench-cpu.sh), not by make bench.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench-cpu: $*" >&2; exit 1; }
pids=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
[ "$(id -u)" = 0 ] || die "vsftpd needs root to log users in"
for b in bin/ftpsgate bin/ftpsload; do [ -x "$b" ] || die "$b missing: run make build"; done
read -r BACKEND PROXY < <(free_ports 2)
[ -n "$PROXY" ] || die "no free ports"
work=$(mktemp -d /dev/shm/ftpsgate-cpu.XXXXXX)
chmod 755 "$work"
cleanup() {
	stop_pids
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
account_password >"$work/password"
make_cert "$work"
start_vsftpd "$work" "$BACKEND"
vsftpd_pid=${pids[-1]}
head -c $((1 << 30)) /dev/urandom >"$work/root/big.bin"
cat >"$work/ftpsgate.hcl" <<EOF
listener "ftps" {
  address       = "127.0.0.1:$PROXY"
  cert_file     = "$work/tls.crt"
  key_file      = "$work/tls.key"
  passive_ports = "51000-51099"
  backend       = "legacy"
}
backend "legacy" {
  address = "127.0.0.1:$BACKEND"
}
EOF
setsid bin/ftpsgate run -config "$work/ftpsgate.hcl" -log-level warn 2>"$work/ftpsgate.log" &
pids+=($!)
proxy_pid=$!
wait_greeting "$PROXY" || die "ftpsgate did not start"

hz=$(getconf CLK_TCK)
# cpu PID: user+system time of PID and its reaped children, in ticks
# (vsftpd's sessions are children of its listener).
cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}'; }
printf '%-9s %9s %7s %10s %9s %9s %14s\n' direction MB/s wall client_s proxy_s vsftpd_s "bound(${NPROC:-$(nproc)} cores)"
for dir in down up; do
	path=big.bin
	[ "$dir" = up ] && path=up.bin
	for _ in 1 2; do
		p0=$(cpu "$proxy_pid") v0=$(cpu "$vsftpd_pid")
		out=$({ /usr/bin/time -f "%U %S %e" bin/ftpsload transfer -tls -addr "127.0.0.1:$PROXY" -user "$ACCOUNT" \
			-password-file "$work/password" -ca "$work/tls.crt" -dir "$dir" -size 1GiB -path "$path"; } 2>&1)
		# Let vsftpd reap the session's processes, whose time then counts.
		for _ in $(seq 1 50); do [ -z "$(pgrep -P "$vsftpd_pid")" ] && break; sleep 0.1; done
		p1=$(cpu "$proxy_pid") v1=$(cpu "$vsftpd_pid")
		rate=$(echo "$out" | grep -o '"value":[0-9.]*' | cut -d: -f2)
		read -r cu cs wall < <(echo "$out" | tail -1)
		client=$(awk -v a="$cu" -v b="$cs" 'BEGIN {printf "%.2f", a + b}')
		proxy=$(secs $((p1 - p0))) vsftpd=$(secs $((v1 - v0)))
		bound=$(awk -v n="$(nproc)" -v c="$client" -v p="$proxy" -v v="$vsftpd" 'BEGIN {printf "%.0f MB/s", n * 1073.741824 / (c + p + v)}')
		printf '%-9s %9.0f %7s %10s %9s %9s %14s\n' "$dir" "$rate" "$wall" "$client" "$proxy" "$vsftpd" "$bound"
	done
done
