# Shared by demo.sh and bench.sh: a vsftpd (and ProFTPD), unpacked by
# test-deps, on loopback serving a directory to the test account, a self-signed
# certificate, readiness checks, free ports and stopping what was started.
# The caller defines die() and an array pids, and sources this file.

ACCOUNT=ftpsgate-test

# free_ports N prints N distinct TCP ports free on 127.0.0.1 just now, on
# one line. They are taken below Linux's ephemeral range: a port the kernel
# hands out for bind(0) can be the source port of an outgoing connection (a
# readiness check, a proxy's backend leg) by the time a server binds it, and
# CI once lost HAProxy's listener that way.
free_ports() {
	python3 - "$1" <<-'EOF'
		import random, socket, sys
		low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
		held = []
		for port in random.sample(range(10000, low), len(range(10000, low))):
		    if len(held) == int(sys.argv[1]):
		        break
		    s = socket.socket()
		    try:
		        s.bind(("127.0.0.1", port))
		    except OSError:
		        s.close()
		        continue
		    held.append(s)
		if len(held) < int(sys.argv[1]):
		    sys.exit("free_ports: not enough free ports below %d" % low)
		print(" ".join(str(s.getsockname()[1]) for s in held))
	EOF
}

# free_port prints one such port.
free_port() { free_ports 1; }

# stop_pids stops every process (and process group) the script started, as
# listed in pids, and waits for them.
stop_pids() {
	for pid in "${pids[@]}"; do kill -TERM -- "-$pid" "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}

# account_password prints the test account's password (made by test-deps).
account_password() {
	cat /var/lib/ftpsgate-test/password 2>/dev/null || die "no test account: run make test-deps"
}

# wait_greeting PORT: waits until a server on 127.0.0.1:PORT sends 220.
wait_greeting() {
	for _ in $(seq 1 100); do
		if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
			if read -r -t 2 line <&3 && [[ $line == 220* ]]; then exec 3>&-; return 0; fi
			exec 3>&-
		fi
		sleep 0.1
	done
	return 1
}

# The FTP servers, unpacked by test-deps (never the machine's own, whose
# packages the scripts neither install nor remove).
VSFTPD_ROOT=/opt/ftpsgate-test/vsftpd
PROFTPD_ROOT=/opt/ftpsgate-test/proftpd

# server_wrapper: when set, start_vsftpd and start_proftpd run the server
# under this command (make bench: ftpsload reap, to count its CPU time).
server_wrapper=()

# start_vsftpd DIR PORT [LINE…]: vsftpd (unpacked by test-deps), plain FTP
# on 127.0.0.1:PORT serving DIR/root, logging to DIR/vsftpd.log
# (DIR/vsftpd-PORT.log when more lines, such as ssl_enable=YES, are added to
# its configuration); waits for its greeting.
start_vsftpd() {
	local dir=$1 port=$2 conf=$1/vsftpd.conf log=$1/vsftpd.log
	shift 2
	[ -x "$VSFTPD_ROOT/usr/sbin/vsftpd" ] || die "vsftpd not found in $VSFTPD_ROOT: run make test-deps"
	if [ $# -gt 0 ]; then conf=$dir/vsftpd-$port.conf log=$dir/vsftpd-$port.log; fi
	mkdir -p "$dir/root" "$dir/empty"
	chown "$ACCOUNT" "$dir/root"
	cat >"$conf" <<-CONF
		listen=YES
		listen_ipv6=NO
		listen_address=127.0.0.1
		listen_port=$port
		background=NO
		anonymous_enable=NO
		local_enable=YES
		write_enable=YES
		local_umask=022
		pam_service_name=$ACCOUNT
		local_root=$dir/root
		chroot_local_user=YES
		allow_writeable_chroot=YES
		secure_chroot_dir=$dir/empty
		seccomp_sandbox=NO
		vsftpd_log_file=$log
	CONF
	printf '%s\n' "$@" >>"$conf"
	setsid "${server_wrapper[@]}" "$VSFTPD_ROOT/usr/sbin/vsftpd" "$conf" &
	pids+=($!)
	wait_greeting "$port" || die "vsftpd did not start; see $log"
}

# start_proftpd DIR PORT [LINE…]: ProFTPD (unpacked by test-deps) on
# 127.0.0.1:PORT with DIR/proftpd-PORT.conf, logging the account in from a
# user file of its own (a SHA-512 crypt hash: cheap, unlike PAM), serving
# DIR/root; the lines are added to its configuration. Waits for its greeting
# and sets proftpd_pid.
start_proftpd() {
	local dir=$1 port=$2 passwd
	shift 2
	[ -x "$PROFTPD_ROOT/usr/sbin/proftpd" ] || die "ProFTPD not found in $PROFTPD_ROOT: run make test-deps"
	mkdir -p "$dir/root" "$dir/proxy-tables-$port"
	chown "$ACCOUNT" "$dir/root"
	passwd=$dir/proftpd.passwd
	if [ ! -f "$passwd" ]; then
		printf '%s:%s:%s:%s::%s:/usr/sbin/nologin\n' "$ACCOUNT" \
			"$(account_password | openssl passwd -6 -stdin)" "$(id -u "$ACCOUNT")" "$(id -g "$ACCOUNT")" \
			"$dir/root" >"$passwd"
		chmod 600 "$passwd"
	fi
	cat >"$dir/proftpd-$port.conf" <<-CONF
		ServerType standalone
		ServerName "ftpsgate bench"
		DefaultServer on
		Port $port
		DefaultAddress 127.0.0.1
		SocketBindTight on
		UseIPv6 off
		User nobody
		Group nogroup
		PidFile $dir/proftpd-$port.pid
		ScoreboardFile $dir/proftpd-$port.scoreboard
		DelayTable none
		<IfModule mod_delay.c>
		DelayEngine off
		</IfModule>
		WtmpLog off
		UseReverseDNS off
		ModulePath $PROFTPD_ROOT/usr/lib/proftpd
		AuthOrder mod_auth_file.c
		AuthUserFile $passwd
		RequireValidShell off
		DefaultRoot ~
		AllowOverwrite on
		MaxInstances 4000
		MaxClientsPerHost none
		SystemLog $dir/proftpd-$port.log
		TransferLog none
	CONF
	printf '%s\n' "$@" >>"$dir/proftpd-$port.conf"
	setsid "${server_wrapper[@]}" "$PROFTPD_ROOT/usr/sbin/proftpd" -n -q -c "$dir/proftpd-$port.conf" 2>>"$dir/proftpd-$port.log" &
	pids+=($!)
	proftpd_pid=$!
	wait_greeting "$port" || die "ProFTPD did not start; see $dir/proftpd-$port.log"
}

# pss_kib PID: the proportional set size of PID and its children, in KiB
# (shared pages split between the processes that map them).
pss_kib() {
	local total=0 pid kib
	for pid in "$1" $(pgrep -P "$1"); do
		kib=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null) || kib=0
		total=$((total + ${kib:-0}))
	done
	echo "$total"
}

# make_cert DIR: a self-signed ECDSA certificate for localhost and
# 127.0.0.1 in DIR/tls.crt and DIR/tls.key.
make_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
		-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$1/tls.key" -out "$1/tls.crt" 2>/dev/null || die "openssl failed"
}
