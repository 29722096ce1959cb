#!/usr/bin/env bash
# make bench: 1 GiB download and upload with curl, through ftpsgate (FTPS,
# PROT P, in front of a plain vsftpd) and straight to the same vsftpd (plain
# FTP), in one run on loopback. Files live in tmpfs so the disk is not
# measured. Each figure is the median of RUNS runs; ratios are proxied over
# direct. Results also go to results/bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}

die() { echo "bench: $*" >&2; exit 1; }
pids=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
[ "$(id -u)" = 0 ] || die "vsftpd needs root to log users in: run sudo make bench"
[ -x bin/ftpsgate ] || die "bin/ftpsgate missing: run make build"
PASSWORD=$(account_password)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND_PORT=$(free_port)
PROXY_PORT=$(free_port)

work=$(mktemp -d /dev/shm/ftpsgate-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM -- "-$pid" "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

start_vsftpd "$work" "$BACKEND_PORT"
make_cert "$work"
cat >"$work/ftpsgate.hcl" <<EOF
listener "ftps" {
  address       = "127.0.0.1:$PROXY_PORT"
  cert_file     = "$work/tls.crt"
  key_file      = "$work/tls.key"
  passive_ports = "51000-51099"
  backend       = "legacy"
}
backend "legacy" {
  address = "127.0.0.1:$BACKEND_PORT"
}
EOF

setsid bin/ftpsgate run -config "$work/ftpsgate.hcl" -log-level warn 2>"$work/ftpsgate.log" &
pids+=($!)
proxy_pid=$!
wait_greeting "$PROXY_PORT" || die "ftpsgate did not start: $(cat "$work/ftpsgate.log")"

echo "bench: writing a ${SIZE_MIB} MiB random file to tmpfs"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/root/file.bin"
cp "$work/root/file.bin" "$work/upload.bin"

U="$ACCOUNT:$PASSWORD"
DIRECT="ftp://$U@127.0.0.1:$BACKEND_PORT"
PROXIED="ftp://$U@127.0.0.1:$PROXY_PORT"
TLS=(--ssl-reqd --cacert "$work/tls.crt")

# measure NAME CURL-ARGS…: median speed in MB/s (10^6 bytes) over RUNS runs.
measure() {
	local name=$1 field=$2
	shift 2
	local speeds=()
	for _ in $(seq 1 "$RUNS"); do
		speeds+=("$(curl -sS --fail -w "%{$field}" -o /dev/null "$@")")
		rm -f "$work/root/up.bin"
	done
	printf '%s\n' "${speeds[@]}" | sort -n | awk -v n="$RUNS" '{a[NR]=$1} END {printf "%.1f\n", a[int((n+1)/2)]/1e6}'
}

echo "bench: measuring, $RUNS runs each"
down_direct=$(measure "download direct" speed_download "$DIRECT/file.bin")
down_proxy=$(measure "download proxied" speed_download "${TLS[@]}" "$PROXIED/file.bin")
up_direct=$(measure "upload direct" speed_upload -T "$work/upload.bin" "$DIRECT/up.bin")
up_proxy=$(measure "upload proxied" speed_upload "${TLS[@]}" -T "$work/upload.bin" "$PROXIED/up.bin")
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$proxy_pid/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
cat <<EOF

${SIZE_MIB} MiB, one stream, curl $(curl --version | awk 'NR==1 {print $2}'), loopback, median of $RUNS ($(nproc) cores)
| path                                    | download MB/s | upload MB/s |
|-----------------------------------------|---------------|-------------|
| direct: plain FTP to vsftpd             | $(printf %13s "$down_direct") | $(printf %11s "$up_direct") |
| ftpsgate: FTPS (PROT P) -> plain vsftpd | $(printf %13s "$down_proxy") | $(printf %11s "$up_proxy") |
| ratio proxied / direct                  | $(printf %13s "$(ratio "$down_proxy" "$down_direct")") | $(printf %11s "$(ratio "$up_proxy" "$up_direct")") |
ftpsgate peak RSS during the run: $((rss_kib / 1024)) MiB
EOF

mkdir -p results
cat >results/bench.json <<EOF
{"size_mib": $SIZE_MIB, "runs": $RUNS, "download_direct_mbps": $down_direct, "download_proxied_mbps": $down_proxy,
 "upload_direct_mbps": $up_direct, "upload_proxied_mbps": $up_proxy, "proxy_peak_rss_kib": $rss_kib}
EOF
echo "bench: results/bench.json written"
