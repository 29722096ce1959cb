#!/usr/bin/env bash
# make bench: ftpsgate side by side with the ways its users would otherwise
# serve FTPS, in one run on loopback, measured by ftpsload (cmd/ftpsload,
# Go crypto/tls, PROT P with the data TLS session resumed as FTPS clients
# do). Files live in tmpfs so the disk is not measured.
#
# Paths, all in front of (or being) the same vsftpd and its files:
#   ftpsgate           client (FTPS) -> ftpsgate -> plain vsftpd
#   ftpsgate through the agent
#                      client (FTPS) -> ftpsgate (edge, via_agent) <- ftpsgate
#                      agent (dials the edge, mutual TLS, yamux) -> plain vsftpd;
#                      transfers only
#   vsftpd FTPS        client (FTPS) -> vsftpd doing TLS itself (ssl_enable)
#   plain FTP direct   client (plain FTP) -> vsftpd
#   mod_proxy          client (FTPS) -> ProFTPD mod_proxy + mod_tls -> plain vsftpd
#   Go TLS ceiling     one Go TLS sender and one receiver, no FTP
#   HAProxy TCP relay  plain client -> HAProxy (mode tcp) -> plain vsftpd, for
#                      the latency only: what any proxy's extra hop costs here
# Session setup runs against ProFTPD with a user file (cheap logins) behind
# ftpsgate and mod_proxy, and against vsftpd (PAM) behind ftpsgate and on
# its own. Idle memory uses ftpsload's own minimal FTP responder as the
# backend: thousands of real server processes would measure the server.
# ftpsgate writes its audit stream (to tmpfs), as it would in production.
# For the single-stream transfers, the CPU time each process on the path
# spent per GiB (client, proxy, server) and the rate that much CPU allows
# on this machine's cores: the same run's evidence of how near a path is
# to what the machine can do (see throughput below).
#
# QUICK=1 (make bench-quick) shrinks every figure to a smoke test.
# Prints a markdown table; writes it with the JSON and an SVG chart to
# results/bench.{md,json,svg} (results/quick/ for QUICK=1).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
	SIZE=${SIZE:-64MiB} RUNS=${RUNS:-1} PAR=${PAR:-10} PAR_SIZE=${PAR_SIZE:-8MiB}
	SETUP_TIME=${SETUP_TIME:-2s} HANDSHAKE_TIME=${HANDSHAKE_TIME:-1s} LAT_N=${LAT_N:-300} IDLE_COUNTS=${IDLE_COUNTS:-200} IDLE_MODPROXY=${IDLE_MODPROXY:-100}
else
	SIZE=${SIZE:-1GiB} RUNS=${RUNS:-3} PAR=${PAR:-50} PAR_SIZE=${PAR_SIZE:-64MiB}
	SETUP_TIME=${SETUP_TIME:-10s} HANDSHAKE_TIME=${HANDSHAKE_TIME:-5s} LAT_N=${LAT_N:-3000} IDLE_COUNTS=${IDLE_COUNTS:-"1000 10000"} IDLE_MODPROXY=${IDLE_MODPROXY:-1000}
fi

die() { echo "bench: $*" >&2; exit 1; }
pids=()
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
[ "$(id -u)" = 0 ] || die "vsftpd and ProFTPD need root to log users in: run sudo make bench"
for b in bin/ftpsgate bin/ftpsload; do [ -x "$b" ] || die "$b missing: run make build"; done
[ -f "$PROFTPD_ROOT/usr/lib/proftpd/mod_proxy.so" ] || die "ProFTPD mod_proxy missing: run make test-deps"
command -v haproxy >/dev/null || die "haproxy missing: run make test-deps"

work=$(mktemp -d /dev/shm/ftpsgate-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
	stop_pids
	[ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM
account_password >"$work/password"
chmod 600 "$work/password"
make_cert "$work"
results=$work/results.jsonl
: >"$results"

# Backends and baselines.
read -r VSFTPD VSFTPD_TLS PROFTPD PROFTPD_TLS RESPONDER MP_VSFTPD MP_PROFTPD MP_RESPONDER SINK \
	GATE_VSFTPD GATE_PROFTPD IDLE_GATE RELAY GATE_SHIELD SINK_RSA GATE_LIMITED GATE_RESPONDER < <(free_ports 17)
[ -n "$GATE_RESPONDER" ] || die "no free ports"
# reaped START…: a start_* function of lib.sh (or mod_proxy) with its
# server under ftpsload reap. vsftpd's session processes can orphan their
# child, whose CPU time is then lost to init; the reaper adopts them. The
# servers whose CPU time the throughput rows count run so.
reaped() {
	server_wrapper=(bin/ftpsload reap)
	"$@"
	server_wrapper=()
}
reaped start_vsftpd "$work" "$VSFTPD"
vsftpd_pid=${pids[-1]}
reaped start_vsftpd "$work" "$VSFTPD_TLS" ssl_enable=YES "rsa_cert_file=$work/tls.crt" "rsa_private_key_file=$work/tls.key" \
	ssl_ciphers=HIGH require_ssl_reuse=YES force_local_logins_ssl=YES force_local_data_ssl=YES
vsftpd_tls_pid=${pids[-1]}
start_proftpd "$work" "$PROFTPD"
setsid bin/ftpsload responder -listen "127.0.0.1:$RESPONDER" >/dev/null &
pids+=($!)
wait_greeting "$RESPONDER" || die "responder did not start"
setsid bin/ftpsload tls-sink -listen "127.0.0.1:$SINK" -cert "$work/tls.crt" -key "$work/tls.key" >/dev/null &
pids+=($!)
sink_pid=$!
for _ in $(seq 1 100); do { exec 3<>"/dev/tcp/127.0.0.1/$SINK"; } 2>/dev/null && break; sleep 0.1; done
exec 3>&- || die "tls-sink did not start"

# mod_proxy PORT BACKEND: ProFTPD's reverse proxy terminating TLS (mod_tls,
# TLS 1.2 and 1.3, session reuse required on data as its default) in front
# of a plain backend. The Random policy: the default ones keep their state
# in SQLite, and 32 concurrent logins then fail on "database is locked".
mod_proxy() {
	start_proftpd "$work" "$1" "${tls_lines[@]}" "LoadModule mod_proxy.c" "ProxyEngine on" "ProxyRole reverse" \
		"ProxyTables $work/proxy-tables-$1" "ProxyLog $work/proxy-$1.log" "ProxyTLSEngine off" \
		"ProxyReverseConnectPolicy Random" "ProxyReverseServers ftp://$2"
}
tls_lines=("LoadModule mod_tls.c" "TLSEngine on" "TLSRequired on" "TLSProtocol TLSv1.2 TLSv1.3" "TLSVerifyClient off"
	"TLSECCertificateFile $work/tls.crt" "TLSECCertificateKeyFile $work/tls.key")
start_proftpd "$work" "$PROFTPD_TLS" "${tls_lines[@]}"
cat >"$work/haproxy.cfg" <<EOF
defaults
  mode tcp
  timeout connect 10s
  timeout client 5m
  timeout server 5m
listen relay
  bind 127.0.0.1:$RELAY
  server vsftpd 127.0.0.1:$VSFTPD
EOF
setsid haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_greeting "$RELAY" || die "haproxy did not start: $(cat "$work/haproxy.log")"
reaped mod_proxy "$MP_VSFTPD" "127.0.0.1:$VSFTPD"
mp_vsftpd_pid=$proftpd_pid
mod_proxy "$MP_PROFTPD" "127.0.0.1:$PROFTPD"
mod_proxy "$MP_RESPONDER" "127.0.0.1:$RESPONDER"
mp_responder_pid=$proftpd_pid

# ftpsgate NAME LISTENER:BACKEND…: an ftpsgate with one listener per pair,
# limits raised for the load (the defaults allow 50 sessions per address).
# $backend_extra, $listener_extra, $limits_extra and $gate_extra, if set,
# are more HCL for each backend block, each listener block, the limits
# block and the file.
ftpsgate() {
	local name=$1 conf=$work/$1.hcl ports=51000 first
	shift
	: >"$conf"
	for pair in "$@"; do
		first=${first:-${pair%%:*}}
		cat >>"$conf" <<-EOF
			listener "l${pair%%:*}" {
			  address       = "127.0.0.1:${pair%%:*}"
			  cert_file     = "$work/tls.crt"
			  key_file      = "$work/tls.key"
			  passive_ports = "$ports-$((ports + 999))"
			  backend       = "b${pair#*:}"
			  ${listener_extra:-}
			}
			backend "b${pair#*:}" {
			  address = "127.0.0.1:${pair#*:}"
			  ${backend_extra:-}
			}
		EOF
		ports=$((ports + 1000))
	done
	cat >>"$conf" <<-EOF
		limits {
		  max_sessions        = 20000
		  max_sessions_per_ip = 20000
		  ${limits_extra:-}
		}
		audit {
		  file = "$work/$name-audit.log"
		}
		${gate_extra:-}
	EOF
	setsid bin/ftpsgate run -config "$conf" -log-level warn 2>"$work/$name.log" &
	pids+=($!)
	gate_pid=$!
	wait_greeting "$first" || die "ftpsgate did not start: $(cat "$work/$name.log")"
}
# The main gate, also in front of ftpsload's responder, whose logins cost
# nothing: session setup through it is bounded by TLS, not by a server.
ftpsgate gate "$GATE_VSFTPD:$VSFTPD" "$GATE_PROFTPD:$PROFTPD" "$GATE_RESPONDER:$RESPONDER"
main_gate=$gate_pid
# The same in front of ProFTPD with the backend's shield set (issue 27):
# a session bound the load never reaches, so that the row shows what the
# queue's bookkeeping costs against the defaults' paced dials alone.
backend_extra="max_sessions = 10000" ftpsgate shield "$GATE_SHIELD:$PROFTPD"
# The same in front of vsftpd with every rate limit and max_file_size set
# far above what loopback carries (issue 19): the row beside ftpsgate's
# shows what the limits' bookkeeping costs a transfer they never slow.
listener_extra='rate_down = "1TiB"
  rate_up = "1TiB"' gate_extra='rates {
  user_down = "1TiB"
  user_up = "1TiB"
  address_down = "1TiB"
  address_up = "1TiB"
  transfer_down = "1TiB"
  transfer_up = "1TiB"
}' limits_extra='max_file_size = "1TiB"' ftpsgate limited "$GATE_LIMITED:$VSFTPD"
limited_gate=$gate_pid

load() { bin/ftpsload "$@" -user "$ACCOUNT" -password-file "$work/password" -ca "$work/tls.crt" >>"$results"; }
# The transfer paths, each LABEL|TLS FLAG|PORT|PROXY PID|SERVER PID (the
# processes whose CPU time the throughput rows count).
paths=("ftpsgate|-tls|$GATE_VSFTPD|$main_gate|$vsftpd_pid"
	"ftpsgate, limits block present (unthrottled)|-tls|$GATE_LIMITED|$limited_gate|$vsftpd_pid"
	"vsftpd FTPS|-tls|$VSFTPD_TLS||$vsftpd_tls_pid"
	"plain FTP direct|-tls=false|$VSFTPD||$vsftpd_pid"
	"mod_proxy|-tls|$MP_VSFTPD|$mp_vsftpd_pid|$vsftpd_pid")
# each TEST ARGS…: runs one measurement on every path.
each() {
	local test=$1 spec label tls port
	shift
	for spec in "${paths[@]}"; do
		IFS='|' read -r label tls port _ <<<"$spec"
		load "$@" -test "$test" -label "$label" "$tls" -addr "127.0.0.1:$port"
	done
}
ceiling() { bin/ftpsload ceiling -addr "127.0.0.1:$SINK" -ca "$work/tls.crt" "$@" >>"$results"; }

# The CPU time each process on a path spends per GiB moved: the client
# (ftpsload's own count), the proxy, the server (with its session
# processes, once reaped). On this machine's cores, those seconds bound the
# path's rate whatever any one process does: cores x 1 GiB / sum.
# cpu PID: CPU ticks of PID and its children, each with the children it
# has reaped (for vsftpd: the reaper, holding what vsftpd orphaned, and
# vsftpd; 0 for no PID).
cpu() {
	local total=0 p
	[ -n "$1" ] || { echo 0; return; }
	for p in "$1" $(pgrep -P "$1"); do
		total=$((total + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}
# below PID: the number of processes under PID, zombies included.
below() {
	local n=0 c
	[ -n "$1" ] || { echo 0; return; }
	for c in $(pgrep -P "$1"); do n=$((n + 1 + $(below "$c"))); done
	echo "$n"
}
# settled PID N: waits (up to 10 s) until no more than N processes are
# under PID (as many as before the measurement), every session's process
# having ended and been waited for, its time then counted in cpu PID.
settled() {
	for _ in $(seq 1 100); do [ "$(below "$1")" -le "$2" ] && return 0; sleep 0.1; done
	echo "bench: processes under $1 still running; their CPU time is not counted" >&2
}
# cpu_rows TEST LABEL PROXY_TICKS SERVER_TICKS: from those and the client's
# figures in the last result line, the CPU per GiB and the bound rows.
cpu_rows() {
	local last client bytes
	last=$(tail -n 1 "$results")
	client=$(grep -o '"cpu_s":[0-9.e+-]*' <<<"$last" | cut -d: -f2)
	bytes=$(grep -o '"bytes":[0-9.e+-]*' <<<"$last" | cut -d: -f2)
	awk -v test="$1" -v label="$2" -v p="$3" -v s="$4" -v c="${client:-0}" -v b="${bytes:-0}" \
		-v hz="$(getconf CLK_TCK)" -v cores="$(nproc)" 'BEGIN {
		if (b <= 0) exit
		gib = b / 2^30; c /= gib; p /= hz * gib; s /= hz * gib; sum = c + p + s
		if (sum <= 0) exit
		printf "{\"test\":\"%s, CPU per GiB\",\"path\":\"%s\",\"value\":%.3f,\"unit\":\"s/GiB\",\"extra\":{\"client_s\":%.3f,\"proxy_s\":%.3f,\"server_s\":%.3f}}\n", test, label, sum, c, p, s
		printf "{\"test\":\"%s, CPU bound on %d cores\",\"path\":\"%s\",\"value\":%.1f,\"unit\":\"MB/s\"}\n", test, cores, label, cores * 1073.741824 / sum
	}' >>"$results"
}
# throughput TEST DIR FILE: one $SIZE stream (RETR or STOR of FILE) on
# every path, and the Go TLS ceiling (its server is the sink), each with
# its CPU rows.
throughput() {
	local test=$1 dir=$2 file=$3 spec label tls port proxy server p0 s0 pn sn
	for spec in "${paths[@]}"; do
		IFS='|' read -r label tls port proxy server <<<"$spec"
		p0=$(cpu "$proxy") s0=$(cpu "$server") pn=$(below "$proxy") sn=$(below "$server")
		load transfer -dir "$dir" -size "$SIZE" -path "$file" -runs "$RUNS" -test "$test" -label "$label" "$tls" \
			-addr "127.0.0.1:$port"
		settled "$server" "$sn"
		settled "$proxy" "$pn"
		cpu_rows "$test" "$label" $(($(cpu "$proxy") - p0)) $(($(cpu "$server") - s0))
	done
	s0=$(cpu "$sink_pid")
	ceiling -test "$test" -dir "$dir" -size "$SIZE"
	cpu_rows "$test" "Go TLS ceiling" 0 $(($(cpu "$sink_pid") - s0))
}

echo "bench: writing $SIZE and $PAR_SIZE random files to tmpfs"
bytes() { case $1 in *GiB) echo $((${1%GiB} << 30)) ;; *MiB) echo $((${1%MiB} << 20)) ;; *) echo "$1" ;; esac; }
head -c "$(bytes "$SIZE")" /dev/urandom >"$work/root/big.bin"
head -c "$(bytes "$PAR_SIZE")" /dev/urandom >"$work/root/par.bin"

echo "bench: 1. throughput, $SIZE one stream, median of $RUNS"
throughput "download $SIZE" down big.bin
throughput "upload $SIZE" up up.bin

# 1b. Uploads scanned inline (issue 20): an ftpsgate of its own whose
# listener names a clamd scan block, in front of the same vsftpd, beside
# the unscanned upload above. Its clamd is started here with a database
# of one signature made offline (sigtool --md5 of the EICAR test file, as
# the tests do: nothing is downloaded, the system's clamd is not used).
# clamd reads the stream into a temporary file (tmpfs here) and scans it
# after its last byte, while the 226 waits: its CPU per GiB, a row of its
# own and counted with the server's in the bound row, is what bounds the
# scanned rate.
echo "bench: 1b. upload $SIZE scanned inline by clamd"
scan_test="upload $SIZE" scan_label="ftpsgate, uploads scanned inline (clamd)"
read -r GATE_SCAN < <(free_ports 1)
mkdir -p "$work/clamd/db"
printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' >"$work/clamd/Eicar-Test-Signature"
(cd "$work/clamd" && sigtool --md5 Eicar-Test-Signature >db/eicar.hdb) || die "sigtool failed"
scan_max=$(($(bytes "$SIZE") + (1 << 20)))
printf '%s\n' "Foreground yes" "DatabaseDirectory $work/clamd/db" "LocalSocket $work/clamd/clamd.sock" \
	"LogFile $work/clamd/clamd.log" "PidFile $work/clamd/clamd.pid" "TemporaryDirectory $work/clamd" \
	"StreamMaxLength $scan_max" "MaxFileSize $scan_max" "MaxScanSize $scan_max" "SelfCheck 0" >"$work/clamd/clamd.conf"
setsid "$(command -v clamd || echo /usr/sbin/clamd)" -c "$work/clamd/clamd.conf" >"$work/clamd/out.log" 2>&1 &
pids+=($!)
clamd_pid=$!
# clamd_ping: clamd answers PING with PONG on its socket.
clamd_ping() {
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); s.sendall(b"zPING\0")
sys.exit(0 if s.recv(16).startswith(b"PONG") else 1)' "$work/clamd/clamd.sock" 2>/dev/null
}
for _ in $(seq 1 600); do clamd_ping && break; sleep 0.1; done
clamd_ping || die "clamd did not start: $(cat "$work/clamd/out.log")"
listener_extra='scan = "av"' gate_extra="scan \"av\" {
  engine   = \"clamd\"
  address  = \"unix:$work/clamd/clamd.sock\"
  max_size = \"$scan_max\"
  timeout  = \"10m\"
}" ftpsgate scanned "$GATE_SCAN:$VSFTPD"
scan_gate=$gate_pid
p0=$(cpu "$scan_gate") s0=$(cpu "$vsftpd_pid") c0=$(cpu "$clamd_pid") pn=$(below "$scan_gate") sn=$(below "$vsftpd_pid")
load transfer -dir up -size "$SIZE" -path up.bin -runs "$RUNS" -test "$scan_test" -label "$scan_label" -tls \
	-addr "127.0.0.1:$GATE_SCAN"
settled "$vsftpd_pid" "$sn"
settled "$scan_gate" "$pn"
clamd_ticks=$(($(cpu "$clamd_pid") - c0))
scan_bytes=$(tail -n 1 "$results" | grep -o '"bytes":[0-9.e+-]*' | cut -d: -f2)
cpu_rows "$scan_test" "$scan_label" $(($(cpu "$scan_gate") - p0)) $(($(cpu "$vsftpd_pid") - s0 + clamd_ticks))
awk -v t="$scan_test" -v l="$scan_label" -v ticks="$clamd_ticks" -v hz="$(getconf CLK_TCK)" -v b="${scan_bytes:-0}" 'BEGIN {
	if (b > 0) printf "{\"test\":\"%s, clamd CPU per GiB\",\"path\":\"%s\",\"value\":%.3f,\"unit\":\"s/GiB\"}\n", t, l, ticks / hz / (b / 2^30) }' >>"$results"
kill -TERM "$scan_gate" "$clamd_pid" 2>/dev/null || true
wait "$scan_gate" "$clamd_pid" 2>/dev/null || true

# 1c. Through the agent (issue 21): an edge whose backend is the same vsftpd
# via_agent, and an ftpsgate agent process carrying its connections, as in
# a DMZ; one $SIZE stream each way, its CPU rows counting both ftpsgate
# processes as the proxy. Its own ports, certificates and processes,
# stopped at its end. The bench's vsftpd has no passive range, so the
# agent may reach any unprivileged port of 127.0.0.1.
echo "bench: 1c. through the agent, $SIZE one stream each way, median of $RUNS"
read -r GATE_AGENT AGENT_LISTENER AGENT_HEALTH < <(free_ports 3)
[ -n "$AGENT_HEALTH" ] || die "no free ports"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=bench-agents-ca \
	-keyout "$work/agents-ca.key" -out "$work/agents-ca.crt" 2>/dev/null || die "openssl failed"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench -keyout "$work/agent.key" \
	-out "$work/agent.csr" 2>/dev/null || die "openssl failed"
printf 'extendedKeyUsage=clientAuth\n' >"$work/agent.ext"
openssl x509 -req -in "$work/agent.csr" -CA "$work/agents-ca.crt" -CAkey "$work/agents-ca.key" -CAcreateserial \
	-days 7 -extfile "$work/agent.ext" -out "$work/agent.crt" 2>/dev/null || die "openssl failed"
backend_extra='via_agent = "bench"' gate_extra="agent_listener {
  address        = \"127.0.0.1:$AGENT_LISTENER\"
  cert_file      = \"$work/tls.crt\"
  key_file       = \"$work/tls.key\"
  client_ca_file = \"$work/agents-ca.crt\"
  allowed_names  = [\"bench\"]
}" ftpsgate agent-edge "$GATE_AGENT:$VSFTPD"
edge_pid=$gate_pid
cat >"$work/agent.hcl" <<EOF
edge           = "127.0.0.1:$AGENT_LISTENER"
server_name    = "localhost"
ca_file        = "$work/tls.crt"
cert_file      = "$work/agent.crt"
key_file       = "$work/agent.key"
allow_targets  = ["127.0.0.1:1024-65535"]
health_address = "127.0.0.1:$AGENT_HEALTH"
EOF
setsid bin/ftpsgate agent -config "$work/agent.hcl" -log-level warn 2>"$work/agent.log" &
pids+=($!)
agent_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$AGENT_HEALTH/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$AGENT_HEALTH/healthz" >/dev/null || die "the agent did not connect: $(cat "$work/agent.log")"
for t in "download $SIZE|down|big.bin" "upload $SIZE|up|up.bin"; do
	IFS='|' read -r test dir file <<<"$t"
	p0=$(($(cpu "$edge_pid") + $(cpu "$agent_pid"))) s0=$(cpu "$vsftpd_pid") sn=$(below "$vsftpd_pid")
	load transfer -dir "$dir" -size "$SIZE" -path "$file" -runs "$RUNS" -test "$test" -label "ftpsgate through the agent" \
		-tls -addr "127.0.0.1:$GATE_AGENT"
	settled "$vsftpd_pid" "$sn"
	cpu_rows "$test" "ftpsgate through the agent" $(($(cpu "$edge_pid") + $(cpu "$agent_pid") - p0)) $(($(cpu "$vsftpd_pid") - s0))
done
kill -TERM "$agent_pid"
wait "$agent_pid" || true
kill -TERM "$edge_pid"
wait "$edge_pid" || true

echo "bench: 2. $PAR parallel $PAR_SIZE downloads"
each "$PAR × $PAR_SIZE down" transfer -dir down -size "$PAR_SIZE" -path par.bin -streams "$PAR"
ceiling -test "$PAR × $PAR_SIZE down" -dir down -size "$PAR_SIZE" -streams "$PAR"

echo "bench: 3. session setup, 32 clients, $SETUP_TIME each"
setup() { load setup -clients 32 -duration "$SETUP_TIME" -tls "$@"; }
setup -test "setup, ProFTPD user file" -label ftpsgate -addr "127.0.0.1:$GATE_PROFTPD"
setup -test "setup, ProFTPD user file" -label "ftpsgate, max_sessions set" -addr "127.0.0.1:$GATE_SHIELD"
# A client that reconnects keeps its TLS session cache: its control
# connections resume (issue 22), against the full handshakes above.
setup -test "setup, ProFTPD user file" -label "ftpsgate, control TLS resumed" -addr "127.0.0.1:$GATE_PROFTPD" -resume
# ProFTPD forks for every login and bounds the rows above near plain FTP's
# rate; behind a backend whose logins cost nothing (ftpsload's responder)
# the handshakes decide: full ones against resumed ones (issue 22).
setup -test "setup, minimal responder" -label ftpsgate -addr "127.0.0.1:$GATE_RESPONDER"
setup -test "setup, minimal responder" -label "ftpsgate, control TLS resumed" -addr "127.0.0.1:$GATE_RESPONDER" -resume
setup -test "setup, minimal responder" -label "plain FTP direct" -addr "127.0.0.1:$RESPONDER" -tls=false
setup -test "setup, minimal responder" -label mod_proxy -addr "127.0.0.1:$MP_RESPONDER"
setup -test "setup, ProFTPD user file" -label "ProFTPD FTPS" -addr "127.0.0.1:$PROFTPD_TLS"
setup -test "setup, ProFTPD user file" -label "plain FTP direct" -addr "127.0.0.1:$PROFTPD" -tls=false
setup -test "setup, ProFTPD user file" -label mod_proxy -addr "127.0.0.1:$MP_PROFTPD"
# The login checked at the edge (issue 17): an ftpsgate of its own with an
# auth block whose user file holds one argon2id entry, as ftpsgate passwd
# writes by default (m=19456 KiB, t=2, p=1), every login mapped to the
# backend's account; beside "ftpsgate" above, where ProFTPD checks the
# password the client sends. The edge's hash slots (one check per core at
# once) bound this rate.
EDGE_AUTH=$(free_port)
printf 'bench-edge-pw\n' >"$work/edge-password"
chmod 600 "$work/edge-password"
bin/ftpsgate passwd -f "$work/edge-users" bench <"$work/edge-password" >/dev/null 2>&1 ||
	die "ftpsgate passwd failed"
listener_extra='auth = "bench"' gate_extra="auth \"bench\" {
  user_file             = \"$work/edge-users\"
  backend_user          = \"$ACCOUNT\"
  backend_password_file = \"$work/password\"
}" ftpsgate edge-auth "$EDGE_AUTH:$PROFTPD"
bin/ftpsload setup -clients 32 -duration "$SETUP_TIME" -tls -user bench -password-file "$work/edge-password" -ca "$work/tls.crt" \
	-test "setup, ProFTPD user file" -label "ftpsgate, user-file login at the edge" -addr "127.0.0.1:$EDGE_AUTH" >>"$results"
kill -TERM "$gate_pid"
wait "$gate_pid" || true
setup -test "setup, vsftpd PAM" -label ftpsgate -addr "127.0.0.1:$GATE_VSFTPD"
setup -test "setup, vsftpd PAM" -label "vsftpd FTPS" -addr "127.0.0.1:$VSFTPD_TLS"
setup -test "setup, vsftpd PAM" -label mod_proxy -addr "127.0.0.1:$MP_VSFTPD"

# What a full TLS handshake costs a server, by certificate: a lone Go TLS
# endpoint (a tls-sink) with the ECDSA P-256 certificate every other row
# uses, and one with RSA-2048, each counted in handshakes per second of its
# own CPU time, under TLS 1.3 and 1.2. Every control connection pays one.
echo "bench: 3b. full TLS handshakes per server core-second, ECDSA P-256 and RSA-2048, $HANDSHAKE_TIME each"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/rsa.key" -out "$work/rsa.crt" 2>/dev/null ||
	die "openssl failed"
setsid bin/ftpsload tls-sink -listen "127.0.0.1:$SINK_RSA" -cert "$work/rsa.crt" -key "$work/rsa.key" >/dev/null &
pids+=($!)
rsa_sink_pid=$!
for _ in $(seq 1 100); do { exec 3<>"/dev/tcp/127.0.0.1/$SINK_RSA"; } 2>/dev/null && break; sleep 0.1; done
exec 3>&- || die "tls-sink (RSA) did not start"
for v in 1.3 1.2; do
	bin/ftpsload handshakes -addr "127.0.0.1:$SINK" -ca "$work/tls.crt" -server-pid "$sink_pid" -tls "$v" \
		-duration "$HANDSHAKE_TIME" -test "full handshakes, ECDSA P-256, TLS $v" -label "Go TLS ceiling" >>"$results"
	bin/ftpsload handshakes -addr "127.0.0.1:$SINK_RSA" -ca "$work/rsa.crt" -server-pid "$rsa_sink_pid" -tls "$v" \
		-duration "$HANDSHAKE_TIME" -test "full handshakes, RSA-2048, TLS $v" -label "Go TLS ceiling" >>"$results"
done

# One process measures every path in turn, a block of 100 round trips at a
# time, so that the machine's moods weigh on all paths alike; the added
# latency is the median over blocks of a path's block median minus plain
# FTP direct's next to it. Three processes; the median one counts.
echo "bench: 4. command latency, $LAT_N round trips per path, three processes (the median counts)"
for _ in 1 2 3; do
	load latency -n "$LAT_N" -test latency -base "plain FTP direct" \
		-path "ftpsgate=tls://127.0.0.1:$GATE_VSFTPD" -path "vsftpd FTPS=tls://127.0.0.1:$VSFTPD_TLS" \
		-path "plain FTP direct=ftp://127.0.0.1:$VSFTPD" -path "mod_proxy=tls://127.0.0.1:$MP_VSFTPD" \
		-path "HAProxy TCP relay=ftp://127.0.0.1:$RELAY"
done
kill -TERM "$main_gate"
wait "$main_gate" || true

# idle LABEL PORT PID N: holds N idle logged-in FTPS sessions through the
# proxy on PORT and records PID's (and its children's) memory growth per
# session, after the heap has had a moment to settle.
idle() {
	local label=$1 port=$2 pid=$3 n=$4 before after ready=$work/idle-ready
	rm -f "$ready"
	before=$(pss_kib "$pid")
	bin/ftpsload idle -tls -addr "127.0.0.1:$port" -sessions "$n" -ready-file "$ready" \
		-user "$ACCOUNT" -password-file "$work/password" -ca "$work/tls.crt" &
	local holder=$!
	for _ in $(seq 1 1200); do [ -f "$ready" ] || ! kill -0 "$holder" 2>/dev/null && break; sleep 0.1; done
	[ -f "$ready" ] || { kill "$holder" 2>/dev/null; die "idle: $n sessions through $label did not open"; }
	sleep 2
	after=$(pss_kib "$pid")
	kill -TERM "$holder"
	wait "$holder" || true
	echo "{\"test\":\"memory, $n idle sessions\",\"path\":\"$label\",\"value\":$(((after - before) / n)),\"unit\":\"KiB/session\",\"extra\":{\"pss_before_kib\":$before,\"pss_after_kib\":$after}}" >>"$results"
}
# 10,000 sessions need 20,000 descriptors in the proxy; cap at what the
# hard limit allows and say so.
ulimit -n "$(ulimit -Hn)"
fd_cap=$((($(ulimit -Hn) - 200) / 2))
echo "bench: 5. memory per idle session (${IDLE_COUNTS// /, }), responder backend"
for n in $IDLE_COUNTS; do
	if [ "$n" -gt "$fd_cap" ]; then
		echo "bench: the descriptor limit ($(ulimit -Hn)) allows $fd_cap sessions, not $n; measuring $fd_cap"
		n=$fd_cap
	fi
	ftpsgate "idle-$n" "$IDLE_GATE:$RESPONDER"
	idle ftpsgate "$IDLE_GATE" "$gate_pid" "$n"
	kill -TERM "$gate_pid"
	wait "$gate_pid" || true
done
idle mod_proxy "$MP_RESPONDER" "$mp_responder_pid" "$IDLE_MODPROXY"

echo
out=results
[ "${QUICK:-0}" = 1 ] && out=results/quick
mkdir -p "$out"
bin/ftpsload report -in "$results" -json "$out/bench.json" -svg "$out/bench.svg" | tee "$out/bench.md"
echo "Run on $(nproc) cores, $(uname -r), $(date -u +%F) by scripts/bench.sh${QUICK:+ (QUICK=$QUICK)}" | tee -a "$out/bench.md"
echo "bench: $out/bench.{md,json,svg} written"
